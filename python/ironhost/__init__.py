"""ironhost: run AI agents under sandboxed WebAssembly policies.

Under ``ironhost start agent.py`` this module is built into the host. Every call the official
``openai`` and ``anthropic`` SDKs make goes through the policy chain without any change to agent
code. What the agent can use directly:

- ``@ironhost.tool("name")`` marks a tool function (sync or async): policies see each call and
  its result, and a circuit breaker can answer with a fallback instead of running it.
- ``ironhost.current()`` tells the agent its id and live figures (calls, tokens, cost).
- ``ironhost.progress(done, total, unit)`` reports progress to the control plane.
- The exceptions ``PolicyDenied``, ``BudgetExceeded`` and ``CircuitOpen``.
"""

from __future__ import annotations

from .errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigurationError,
    IronhostError,
    PolicyDenied,
)
from ._agent import AgentStatus, current, progress
from ._tools import ToolError, tool

__all__ = [
    "AgentStatus",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigurationError",
    "IronhostError",
    "PolicyDenied",
    "ToolError",
    "current",
    "progress",
    "tool",
]

__version__ = "0.1.0"
