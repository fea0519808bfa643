"""``ironhost.current()``: the running agent and its live figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from . import _context
from ._target import Target


@dataclass(frozen=True)
class AgentStatus:
    """A snapshot of the running agent."""

    agent_id: str
    name: str
    environment: str
    state: str
    run: int
    budget_usd: Optional[float]
    cost_usd: float
    llm_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    metrics: Dict[str, Any] = field(default_factory=dict)

    @property
    def budget_left_usd(self) -> Optional[float]:
        """What is left of the budget, if there is one."""
        if self.budget_usd is None:
            return None
        return max(self.budget_usd - self.cost_usd, 0.0)


def figures(agent: Target) -> Dict[str, Any]:
    """An agent's status and figures as one flat dict (``agent_id``, ``state``, ``budget_usd``,
    ``cost_usd``, ``llm_calls``, ...): what ``get_metrics()`` returns."""
    data = agent.current()
    out: Dict[str, Any] = {k: v for k, v in data.items() if k != "metrics"}
    out.update(data["metrics"])
    return out


def current() -> AgentStatus:
    """The agent this code runs in, with its figures at this moment."""
    data = _context.require("ironhost.current()").current()
    m = data["metrics"]
    return AgentStatus(
        agent_id=data["agent_id"],
        name=data["name"],
        environment=data["environment"],
        state=data["state"],
        run=data["run"],
        budget_usd=data.get("budget_usd"),
        cost_usd=m["cost_usd"],
        llm_calls=m["llm_calls"],
        tool_calls=m["tool_calls"],
        input_tokens=m["input_tokens"],
        output_tokens=m["output_tokens"],
        metrics=m,
    )


def progress(done: int, total: Optional[int] = None, unit: Optional[str] = None) -> None:
    """Report how far the agent is (``progress(23, 100, "leads")``): the dashboard and the
    API show it as ``23 / 100 (23%)``."""
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        raise ValueError(f"progress: done must be a whole number >= 0, not {done!r}")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise ValueError(f"progress: total must be a whole number >= 0, not {total!r}")
    _context.require("ironhost.progress()").progress(done, total, unit)
