"""Which agent a call belongs to.

Under ``ironhost start`` every call in the process belongs to the one agent the host runs
(``ironhost._native.hosted()``). With the pip-installed package, ``@protect_agent`` and
``AgentRuntime`` open agents in this process: the agent a call belongs to is the one active in
its context (a context variable, so asyncio tasks and ``asyncio.to_thread`` carry it). A thread
the agent's code started without copying its context (``threading.Thread``, a thread pool) falls
back to the agent active in the process, when there is exactly one: with several agents active
in different threads, its calls are refused (start it with ``contextvars.copy_context().run``).
Outside any agent, calls are not governed.

A *target* is anything with the agent interface of ``_target.Target``: ``handle_http``,
``tool_begin``, ``tool_end``, ``current``, ``progress`` and ``unit_done`` (a native ``Agent``, the host's
agent under ``ironhost start`` included, or ``ironhost.testing.MockRuntime``'s pure-Python agent).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from typing import Any, Iterator, List, NoReturn, Optional

from ._target import Headers, Target

_ACTIVE: "contextvars.ContextVar[Optional[Target]]" = contextvars.ContextVar(
    "ironhost_agent", default=None
)
_ENTERED: List[Target] = []
_LOCK = threading.Lock()
#: The host's agent under ``ironhost start``, once the native module gave it.
_HOSTED: Optional[Target] = None


def native() -> Optional[Any]:
    """``ironhost._native``, or None when the package was not built with it (the testing kit
    works without it)."""
    try:
        from . import _native
    except ImportError:
        return None
    return _native


def hosted_agent() -> Optional[Target]:
    """The agent ``ironhost start`` runs in this process (``ironhost._native.hosted()``), or
    None elsewhere. The same object every time: callers may compare it by identity."""
    global _HOSTED
    if _HOSTED is None:
        mod = native()
        # Only an agent is kept: before the host set it up, the next call asks again.
        found = None if mod is None else mod.hosted()
        if found is not None:
            with _LOCK:
                if _HOSTED is None:
                    _HOSTED = found
    return _HOSTED


def hosted() -> bool:
    """True under ``ironhost start``: the host's agent governs the whole process."""
    return hosted_agent() is not None


def is_hosted(agent: Any) -> bool:
    """Whether ``agent`` is the host's agent under ``ironhost start`` (the host counts its
    runs and closes it)."""
    return agent is not None and agent is hosted_agent()


def _usable(target: Any) -> bool:
    return target is not None and not getattr(target, "closed", False)


class _Unknown:
    """The target of a thread with no agent of its own while several are active: every call
    is refused, naming the way out."""

    closed = False

    @staticmethod
    def _refuse() -> NoReturn:
        from .errors import IronhostError

        raise IronhostError(
            "several ironhost agents are active in this process and this thread belongs to "
            "none of them (it was started without their context); start it with "
            "contextvars.copy_context().run, or use asyncio.to_thread"
        )

    def handle_http(self, upstream: str, method: str, path: str, headers: Headers, body: bytes) -> NoReturn:
        self._refuse()

    def tool_begin(self, name: str, arguments: str) -> NoReturn:
        self._refuse()

    def tool_end(self, ticket: Any, ok: bool, payload: str, kind: str) -> NoReturn:
        self._refuse()

    def current(self) -> NoReturn:
        self._refuse()

    def progress(self, done: int, total: Optional[int] = None, unit: Optional[str] = None) -> NoReturn:
        self._refuse()

    def unit_done(
        self, ok: bool, seconds: Optional[float], fallback: Optional[str], unit: Optional[str]
    ) -> NoReturn:
        self._refuse()


_UNKNOWN: Target = _Unknown()


def target() -> Optional[Target]:
    """The agent this call belongs to, or None outside any agent."""
    active = _ACTIVE.get()
    if active is not None:
        # Even closed: its calls then fail ("agent ... is closed") instead of going elsewhere.
        return active
    with _LOCK:
        live = {id(e): e for e in _ENTERED if _usable(e)}
    if len(live) == 1:
        return next(iter(live.values()))
    if live:
        # Another thread's agent would be a guess, and letting the call out ungoverned would
        # skip the policies the program asked for: it is refused.
        return _UNKNOWN
    return hosted_agent()


def require(what: str) -> Target:
    """The current target; outside any agent, a RuntimeError that says what needs one."""
    found = target()
    if found is None:
        raise RuntimeError(
            f"{what}: no ironhost agent is active here (run under `ironhost start`, inside "
            "a function decorated with `@ironhost.protect_agent`, or inside "
            "`with ironhost.AgentRuntime()`)"
        )
    return found


@contextlib.contextmanager
def active(agent: Target) -> Iterator[Target]:
    """Make ``agent`` the target in this context (and the fallback for new threads)."""
    token = _ACTIVE.set(agent)
    with _LOCK:
        _ENTERED.append(agent)
    try:
        yield agent
    finally:
        with _LOCK:
            for i in range(len(_ENTERED) - 1, -1, -1):
                if _ENTERED[i] is agent:
                    del _ENTERED[i]
                    break
        _ACTIVE.reset(token)


def _exit_code(exc: Optional[BaseException]) -> int:
    if exc is None:
        return 0
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return 130
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 1


class counted_run:
    """One run of ``agent``: its start, and how the block ended (0; 130 for an interrupt or a
    cancelled task, recorded as stopped; 1 for an exception), go to the store. The agent of
    ``ironhost start`` has its runs counted by the host, and a target without ``run_started``
    (a test double) has none: nothing is recorded for them."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.counted = hasattr(agent, "run_started") and not is_hosted(agent)
        self.run: Optional[int] = None

    def __enter__(self) -> Any:
        if self.counted:
            self.run = self.agent.run_started()
        return self.agent

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        if self.counted:
            # By number: runs of one agent may overlap (concurrent calls).
            self.agent.run_finished(_exit_code(exc), self.run)


@contextlib.contextmanager
def run(agent: Any) -> Iterator[Any]:
    """One run of ``agent`` (see ``counted_run``), active in this context."""
    with counted_run(agent), active(agent):
        yield agent
