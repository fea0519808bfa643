"""``ironhost.current()``: the running agent and its live figures; ``ironhost.progress()``,
``ironhost.unit_done()`` and ``with ironhost.unit()``: what the agent reports of its work."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Dict, Optional, Type

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


#: Longest ``fallback`` or ``unit`` name, in characters (the host refuses longer ones too).
UNIT_NAME_MAX = 64


def _check_name(what: str, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"unit_done: {what} must be a string or None, not {value!r}")
    if not value.strip():
        raise ValueError(f"unit_done: {what} must be a non-empty name, not {value!r}")
    if len(value) > UNIT_NAME_MAX:
        raise ValueError(
            f"unit_done: {what} must be at most {UNIT_NAME_MAX} characters, not {len(value)}"
        )
    if any(not c.isprintable() for c in value):
        raise ValueError(f"unit_done: {what} must not contain control characters: {value!r}")
    return value


def unit_done(
    ok: bool = True,
    *,
    seconds: Optional[float] = None,
    fallback: Optional[str] = None,
    unit: Optional[str] = None,
) -> None:
    """One unit of the agent's work finished (a lead found, a ticket answered): the control
    plane shows the agent's success rate per unit (``100% (23/23)``), units per hour, the
    seconds a unit takes (``P95: 2.1s``) and how many a fallback served.

    ``ok``: whether the unit succeeded. ``seconds``: how long it took (finite, >= 0).
    ``fallback``: what served it instead of the usual path (``"cache"``, ``"placeholder"``);
    a unit served by a fallback is still ``ok``. ``unit``: the word for one (``"leads"``),
    when ``ironhost.progress`` does not give it. ``with ironhost.unit() as u:`` times a unit
    and reports it for you."""
    if not isinstance(ok, bool):
        raise ValueError(f"unit_done: ok must be True or False, not {ok!r}")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"unit_done: seconds must be a number or None, not {seconds!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"unit_done: seconds must be a finite number >= 0, not {seconds!r}")
        seconds = float(seconds)
    fallback = _check_name("fallback", fallback)
    unit = _check_name("unit", unit)
    _context.require("ironhost.unit_done()").unit_done(ok, seconds, fallback, unit)


class Unit:
    """One unit of work under way (``with ironhost.unit() as u:``): timed from entering the
    block; reported with :func:`unit_done` when the block ends. It succeeded unless
    :meth:`fail` was called or an exception escaped the block (the exception still
    propagates); :meth:`fallback` says what served it."""

    def __init__(self, unit: Optional[str] = None) -> None:
        self.unit = _check_name("unit", unit)
        self.ok = True
        self.served_by: Optional[str] = None
        self.seconds: Optional[float] = None
        self._started: Optional[float] = None

    def fallback(self, name: str) -> None:
        """The unit was served by the fallback ``name`` (``"cache"``, ``"placeholder"``)."""
        if name is None:
            raise ValueError("unit.fallback: name must be a non-empty name, not None")
        self.served_by = _check_name("fallback", name)

    def fail(self) -> None:
        """The unit failed (without an exception)."""
        self.ok = False

    def __enter__(self) -> "Unit":
        if self._started is not None:
            raise RuntimeError("ironhost.unit(): a unit is entered once; make a new one per unit")
        # Checked now, not when the unit ends: outside an agent, say so before the work.
        _context.require("ironhost.unit()")
        self._started = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        assert self._started is not None
        self.seconds = max(time.monotonic() - self._started, 0.0)
        if exc_type is not None:
            self.ok = False
        unit_done(self.ok, seconds=self.seconds, fallback=self.served_by, unit=self.unit)


def unit(unit: Optional[str] = None) -> Unit:
    """``with ironhost.unit() as u:`` one unit of work, timed and reported when the block
    ends: failed if an exception escapes it (the exception propagates) or after ``u.fail()``;
    ``u.fallback("cache")`` says a fallback served it. ``unit``: the word for one
    (``"leads"``)."""
    return Unit(unit)
