"""ironhost: run AI agents under sandboxed WebAssembly policies.

Three ways in, one implementation:

- ``ironhost start agent.py``: the host runs the script; this module is built into it.
- ``@ironhost.protect_agent(budget=50.0)``: a function (sync or async) runs as an agent in this
  process (``pip install ./python``).
- ``with ironhost.AgentRuntime(budget=50.0) as rt:``: the in-process host as a context manager;
  ``rt.start_agent(path)``, ``rt.stop_agent(id)``, ``rt.get_metrics(id)``.

Every call the official ``openai`` and ``anthropic`` SDKs make inside an agent goes through the
policy chain without any change to agent code. What the agent can use directly:

- ``@ironhost.tool("name")`` marks a tool function (sync or async): policies see each call and
  its result, and a circuit breaker can answer with a fallback instead of running it. The tools
  of LangChain/LangGraph, openai-agents, pydantic-ai and CrewAI are governed the same way,
  unchanged (``_frameworks``).
- ``ironhost.current()`` tells the agent its id and live figures (calls, tokens, cost).
- ``ironhost.progress(done, total, unit)`` reports progress to the control plane.
- ``ironhost.unit_done(ok, seconds=, fallback=)`` (or ``with ironhost.unit() as u:``) reports one
  unit of work finished: the control plane shows success rate, throughput and seconds per unit.
- The exceptions ``PolicyDenied``, ``BudgetExceeded``, ``UnpricedModel`` and ``CircuitOpen``.
"""

from __future__ import annotations

from .errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigurationError,
    IronhostError,
    PolicyDenied,
    UnpricedModel,
)
from ._agent import AgentStatus, Unit, current, progress, unit, unit_done
from ._sdk import AgentRuntime, ProtectedAgent, protect_agent
from ._tools import ToolError, tool
from . import _frameworks

# The tools of LangChain/LangGraph, openai-agents, pydantic-ai and CrewAI go through the policy
# chain like `@ironhost.tool` functions, as those frameworks are imported (nothing is imported
# here; outside any agent they are untouched).
_frameworks.install()

__all__ = [
    "AgentRuntime",
    "AgentStatus",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigurationError",
    "IronhostError",
    "PolicyDenied",
    "ProtectedAgent",
    "UnpricedModel",
    "ToolError",
    "Unit",
    "current",
    "progress",
    "protect_agent",
    "tool",
    "unit",
    "unit_done",
]

__version__ = "0.1.0"
