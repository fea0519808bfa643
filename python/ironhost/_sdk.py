"""The SDK's entry points: ``@protect_agent`` and ``AgentRuntime``.

Both open agents in this process on the native host (``ironhost._native.open_agent``): the same
engine, bundle, simulator and store ``ironhost start`` uses, configured the same way (keyword
arguments first, then ``IRONHOST_*`` variables, then ``./ironhost.toml``). Under
``ironhost start`` they open nothing: the host's agent already governs the process.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import inspect
import os
import threading
from typing import Any, Callable, Dict, List, Optional, TypeVar, Union, overload

from . import _context, _runner
from ._agent import figures as _metrics
from .errors import IronhostError

F = TypeVar("F", bound=Callable[..., Any])

SAFETY_MODES = ("redact", "block", "warn")

#: The native agents this process opened and has not closed; closed at exit so the store
#: holds everything they did.
_OPEN: List[Any] = []
_OPEN_LOCK = threading.Lock()


def _close_all() -> None:
    with _OPEN_LOCK:
        agents = list(_OPEN)
    for agent in agents:
        try:
            agent.close()
        except BaseException:  # pragma: no cover - best effort at exit, Ctrl-C included
            pass


atexit.register(_close_all)
# SDK clients are often built before the first agent opens (at import, or a LangChain model
# handed to IronhostChain): with no key set they would refuse to construct. The placeholder
# never reaches a provider from an agent; the real key is added at egress.
_runner.placeholder_keys()


class _Options:
    """The settings an entry point was given, checked."""

    def __init__(
        self,
        budget: Optional[float],
        pii_detection: bool,
        circuit_breaker: bool,
        bundle: Optional[Union[str, "os.PathLike[str]"]],
        safety_mode: Optional[str],
        config: Optional[Union[str, "os.PathLike[str]"]],
        environment: Optional[str],
        api: bool,
        listen: Optional[str],
        where: str,
    ) -> None:
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, (int, float)):
                raise TypeError(f"{where}: budget must be a number of US dollars, not {budget!r}")
            if not 0 < budget < float("inf"):
                raise ValueError(f"{where}: budget must be more than 0 and finite, not {budget!r}")
        if safety_mode is not None and safety_mode not in SAFETY_MODES:
            raise ValueError(
                f"{where}: safety_mode must be one of {', '.join(SAFETY_MODES)}, not {safety_mode!r}"
            )
        if safety_mode is not None and not pii_detection:
            raise ValueError(f"{where}: safety_mode needs pii_detection=True")
        if listen is not None and not api:
            raise ValueError(f"{where}: listen needs api=True")
        self.budget = None if budget is None else float(budget)
        self.without: List[str] = []
        if not pii_detection:
            self.without.append("pii-redact")
        if not circuit_breaker:
            self.without.append("circuit-breaker")
        self.bundle = None if bundle is None else os.fspath(bundle)
        self.safety_mode = safety_mode
        self.config = None if config is None else os.fspath(config)
        self.environment = environment
        self.api = api
        self.listen = listen

    def open(self, name: Optional[str], script: str) -> Any:
        """Open a native agent with these settings (refused under ``ironhost start``, whose
        agent governs the process)."""
        native = _context.native()
        if native is None:
            raise IronhostError(
                "the ironhost package was installed without its native module "
                "(ironhost._native); reinstall it with `pip install ./python`, or use "
                "ironhost.testing.MockRuntime in tests"
            )
        placeholder = _runner.PLACEHOLDER_KEY
        options: Dict[str, Any] = {
            "name": name,
            "script": script,
            "budget": self.budget,
            "bundle": self.bundle,
            "safety_mode": self.safety_mode,
            "without": self.without,
            "config": self.config,
            "environment": self.environment,
            "api": self.api,
            "listen": self.listen,
            "cwd": os.getcwd(),
            # The placeholder keys this package set are not keys: they must not send calls to
            # the providers.
            "env": {k: v for k, v in os.environ.items() if v != placeholder},
        }
        agent = native.open_agent(options)
        with _OPEN_LOCK:
            _OPEN[:] = [a for a in _OPEN if not a.closed]
            _OPEN.append(agent)
        _runner.placeholder_keys()
        os.environ.update(dict(agent.start_env))
        from . import _intercept

        _intercept.add_agent_hosts(agent.upstreams)
        _intercept.install()
        return agent


class ProtectedAgent:
    """The agent behind a ``@protect_agent`` function (``fn.ironhost``): opened at the first
    call, one agent for every call in this process, so the budget covers them all."""

    def __init__(self, options: _Options, name: str, script: str) -> None:
        self._options = options
        self._name = name
        self._script = script
        self._agent: Optional[Any] = None
        self._lock = threading.Lock()

    def _open(self) -> Optional[Any]:
        if _context.hosted():
            return None
        with self._lock:
            if self._agent is None or self._agent.closed:
                self._agent = self._options.open(self._name, self._script)
            return self._agent

    def _source(self) -> Optional[Any]:
        # Under `ironhost start` the function runs as the host's agent.
        if self._agent is None:
            return _context.hosted_agent()
        return self._agent

    @property
    def agent_id(self) -> Optional[str]:
        """The agent's id, once it has run (None before the first call); under
        ``ironhost start``, the host's agent."""
        source = self._source()
        return None if source is None else str(source.agent_id)

    def metrics(self) -> Dict[str, Any]:
        """The agent's figures: ``cost_usd``, ``llm_calls``, ``tool_calls``, tokens,
        ``pii_findings``, ``denied``, latencies, and ``budget_usd`` and ``state``. Under
        ``ironhost start``, those of the host's agent."""
        source = self._source()
        if source is None:
            raise RuntimeError(f"{self._name}: the protected function has not run yet")
        return _metrics(source)

    def close(self) -> None:
        """Write everything to the store and shut the agent's host down (done at exit too);
        the next call opens a new agent with a fresh budget."""
        with self._lock:
            if self._agent is not None:
                self._agent.close()


@overload
def protect_agent(fn: F) -> F: ...
@overload
def protect_agent(
    fn: None = None,
    *,
    budget: Optional[float] = None,
    pii_detection: bool = True,
    circuit_breaker: bool = True,
    bundle: Optional[Union[str, "os.PathLike[str]"]] = None,
    safety_mode: Optional[str] = None,
    name: Optional[str] = None,
    config: Optional[Union[str, "os.PathLike[str]"]] = None,
    environment: Optional[str] = None,
) -> Callable[[F], F]: ...


def protect_agent(
    fn: Optional[Callable[..., Any]] = None,
    *,
    budget: Optional[float] = None,
    pii_detection: bool = True,
    circuit_breaker: bool = True,
    bundle: Optional[Union[str, "os.PathLike[str]"]] = None,
    safety_mode: Optional[str] = None,
    name: Optional[str] = None,
    config: Optional[Union[str, "os.PathLike[str]"]] = None,
    environment: Optional[str] = None,
) -> Any:
    """Run a function (sync or async) as an agent under the policy bundle.

    Every call the official ``openai``/``anthropic`` SDKs make inside it goes through the policy
    chain; ``@ironhost.tool`` functions it calls are governed tools. The function's code is
    unchanged; a policy's refusal is raised from the SDK call as ``BudgetExceeded``,
    ``PolicyDenied`` or ``CircuitOpen``.

    Args:
        budget: US dollars for all calls of the function in this process (default: the bundle's,
            $100 in the default bundle; ``IRONHOST_BUDGET`` or ``ironhost.toml`` may set it).
        pii_detection: keep the ``pii-redact`` policy (default on).
        circuit_breaker: keep the ``circuit-breaker`` policy.
        bundle: a bundle directory instead of the built-in default bundle.
        safety_mode: what ``pii-redact`` does with a finding: ``redact`` (its default),
            ``block`` or ``warn``.
        name: the agent's name (default: the function's).
        config: a config file (default: ``./ironhost.toml`` when it exists).
        environment: ``dev``, ``staging`` or ``production``: what policies (and secrets) see.

    Under ``ironhost start`` the function runs under the host's agent and these settings are
    the operator's to make (flags and config).
    """
    options = _Options(
        budget,
        pii_detection,
        circuit_breaker,
        bundle,
        safety_mode,
        config,
        environment,
        api=False,
        listen=None,
        where="protect_agent",
    )

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"protect_agent: {func.__qualname__} is a generator function; decorate the "
                "function that consumes it"
            )
        guard = ProtectedAgent(
            options,
            name or func.__name__,
            f"{func.__module__}:{func.__qualname__}",
        )
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                import asyncio

                # The first call builds the host; the event loop keeps running meanwhile.
                agent = await asyncio.to_thread(guard._open)
                if agent is None:
                    return await func(*args, **kwargs)
                with _context.run(agent):
                    return await func(*args, **kwargs)

            async_wrapper.ironhost = guard  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            agent = guard._open()
            if agent is None:
                return func(*args, **kwargs)
            with _context.run(agent):
                return func(*args, **kwargs)

        wrapper.ironhost = guard  # type: ignore[attr-defined]
        return wrapper

    if fn is not None:
        if not callable(fn):
            raise TypeError(f"protect_agent: {fn!r} is not a function")
        return decorate(fn)
    return decorate


class _Script:
    """An agent script ``start_agent`` runs in a thread of this process."""

    def __init__(self, agent: Any, path: str) -> None:
        self.agent = agent
        self.path = path
        self.exit_code: Optional[int] = None
        self.state = "starting"
        self.thread = threading.Thread(
            target=self._main, name=f"ironhost-{agent.agent_id}", daemon=True
        )

    def _main(self) -> None:
        # A new thread starts with an empty context: this agent is its target. However the
        # script ends (a stop that lands before or after it runs included), the end is recorded.
        code = 1
        try:
            with _context.active(self.agent):
                self.agent.run_started()
                self.state = "running"
                code = _runner.run(self.path, None)
        except KeyboardInterrupt:
            code = 130
        finally:
            self.exit_code = code
            self.state = self.agent.run_finished(code)


def _halt(script: _Script) -> None:
    """Stop a script's agent (calls in flight end, new ones are refused) and raise
    KeyboardInterrupt in its thread at its next Python instruction (a script in a loop that
    never calls ironhost; a blocking call such as ``time.sleep`` finishes first)."""
    script.agent.stop()
    ident = script.thread.ident
    if ident is None or not script.thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
    )


class AgentRuntime:
    """The in-process host as a context manager (``with`` and ``async with``).

    Inside the block, calls through the official SDKs belong to the runtime's own agent
    (``rt.agent_id``). ``rt.start_agent(path)`` runs an agent script in a thread of this process,
    as its own agent; ``rt.stop_agent(id)`` stops it; ``rt.get_metrics(id)`` reads its figures.
    Leaving the block stops the scripts still running, writes everything to the store and shuts
    the host down; an exception from the block propagates unchanged.

    The settings are those of ``protect_agent``, plus ``api=True`` to serve the control plane
    and dashboard from this process (at ``listen``, default 127.0.0.1:7400).
    """

    def __init__(
        self,
        budget: Optional[float] = None,
        pii_detection: bool = True,
        circuit_breaker: bool = True,
        bundle: Optional[Union[str, "os.PathLike[str]"]] = None,
        safety_mode: Optional[str] = None,
        *,
        name: Optional[str] = None,
        config: Optional[Union[str, "os.PathLike[str]"]] = None,
        environment: Optional[str] = None,
        api: bool = False,
        listen: Optional[str] = None,
        stop_timeout: float = 5.0,
    ) -> None:
        self._options = _Options(
            budget,
            pii_detection,
            circuit_breaker,
            bundle,
            safety_mode,
            config,
            environment,
            api,
            listen,
            where="AgentRuntime",
        )
        self._name = name
        self._stop_timeout = stop_timeout
        self._main: Optional[Any] = None
        self._run: Any = None
        self._scripts: Dict[str, _Script] = {}
        self._state = "new"

    # -- the block ---------------------------------------------------------------------------

    def _open_main(self) -> None:
        if self._state != "new":
            raise RuntimeError("an AgentRuntime can be entered once; make a new one")
        self._state = "open"
        if not _context.hosted():
            import __main__

            script = getattr(__main__, "__file__", None) or "<python>"
            self._main = self._options.open(self._name or "runtime", os.path.abspath(script))

    def _enter_main(self) -> None:
        if self._main is not None:
            self._run = _context.run(self._main)
            self._run.__enter__()

    def __enter__(self) -> "AgentRuntime":
        self._open_main()
        self._enter_main()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._run is not None:
                self._run.__exit__(exc_type, exc, tb)
        finally:
            self._shutdown()

    async def __aenter__(self) -> "AgentRuntime":
        import asyncio

        await asyncio.to_thread(self._open_main)
        # The agent becomes the target in this task, not in the worker thread.
        self._enter_main()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        import asyncio

        try:
            if self._run is not None:
                self._run.__exit__(exc_type, exc, tb)
        finally:
            await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        # Stop every script at once, give them the stop timeout together, then close every
        # agent whatever happened; a script that would not stop is reported, not left open.
        self._state = "closed"
        self._run = None
        running = [s for s in self._scripts.values() if s.thread.is_alive()]
        for script in running:
            _halt(script)
        stuck = []
        # Every agent is closed even if Ctrl-C comes while waiting here (for a script to stop,
        # or a close for calls under way): after it, the agents left are stopped before their
        # close, so nothing waits again, and the interrupt is raised once all are closed.
        interrupt: Optional[BaseException] = None
        try:
            for script in running:
                script.thread.join(self._stop_timeout)
                if script.thread.is_alive():
                    stuck.append(script.agent.agent_id)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            interrupt = exc
        agents = [s.agent for s in self._scripts.values()]
        for agent in agents + ([self._main] if self._main is not None else []):
            try:
                if interrupt is not None:
                    agent.stop()
                agent.close()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                interrupt = interrupt or exc
        if stuck:
            import warnings

            warnings.warn(
                f"AgentRuntime: agents {', '.join(stuck)} did not stop within "
                f"{self._stop_timeout} s (blocked outside ironhost); they can make no more calls",
                RuntimeWarning,
                stacklevel=3,
            )
        if interrupt is not None:
            raise interrupt

    def _check_open(self, what: str) -> None:
        if self._state != "open":
            raise RuntimeError(f"{what}: the AgentRuntime is not open (use it in a with block)")

    @property
    def agent_id(self) -> Optional[str]:
        """The runtime's own agent (the block's calls); None under ``ironhost start``."""
        return None if self._main is None else self._main.agent_id

    @property
    def dashboard(self) -> Optional[str]:
        """The control plane's URL, with ``api=True``."""
        return None if self._main is None else self._main.dashboard

    @property
    def agents(self) -> List[str]:
        """The ids of the scripts started, in order."""
        return list(self._scripts)

    # -- scripts -----------------------------------------------------------------------------

    def start_agent(self, path: Union[str, "os.PathLike[str]"], *, name: Optional[str] = None) -> str:
        """Run an agent script (as ``__main__``, its folder on ``sys.path``) in a thread of this
        process, as its own agent under the runtime's settings. Returns its id at once."""
        self._check_open("start_agent")
        full = os.path.abspath(os.fspath(path))
        if not os.path.isfile(full):
            raise FileNotFoundError(f"start_agent: {os.fspath(path)}: no such agent script")
        agent = self._options.open(name, full)
        script = _Script(agent, full)
        self._scripts[agent.agent_id] = script
        script.thread.start()
        return str(agent.agent_id)

    def _script(self, agent_id: str, what: str) -> _Script:
        if self._main is not None and agent_id == self._main.agent_id:
            raise ValueError(
                f"{what}: {agent_id} is the runtime's own agent; it ends with the with block"
            )
        try:
            return self._scripts[agent_id]
        except KeyError:
            raise KeyError(f"{what}: no agent {agent_id!r} was started by this runtime") from None

    def _stop(self, script: _Script, timeout: float) -> str:
        _halt(script)
        script.thread.join(timeout)
        if script.thread.is_alive():
            raise TimeoutError(
                f"stop_agent: agent {script.agent.agent_id} did not stop within {timeout} s "
                "(it is blocked outside ironhost); it cannot make calls any more"
            )
        return script.state

    def stop_agent(self, agent_id: str, timeout: Optional[float] = None) -> str:
        """Stop a started agent: its calls in flight end, new ones are refused, and its thread
        gets ``KeyboardInterrupt``. Waits for it to end; returns its final state (``stopped``,
        or ``completed``/``failed`` if it had already ended)."""
        script = self._script(agent_id, "stop_agent")
        if not script.thread.is_alive() and script.exit_code is not None:
            return script.state
        return self._stop(script, self._stop_timeout if timeout is None else timeout)

    def wait(self, agent_id: str, timeout: Optional[float] = None) -> str:
        """Wait for a started agent to end; its final state, or ``running`` after ``timeout``."""
        script = self._script(agent_id, "wait")
        script.thread.join(timeout)
        return script.state

    def get_metrics(self, agent_id: Optional[str] = None) -> Dict[str, Any]:
        """An agent's figures now (default: the runtime's own): ``agent_id``, ``name``,
        ``state``, ``run``, ``budget_usd``, ``cost_usd``, ``llm_calls``, ``tool_calls``,
        ``input_tokens``, ``output_tokens``, ``cost_by_model``, ``pii_findings``, ``denied``,
        latencies; for a started script also ``exit_code``."""
        if agent_id is None or (self._main is not None and agent_id == self._main.agent_id):
            if self._main is None:
                return _metrics(_context.require("get_metrics"))
            return _metrics(self._main)
        script = self._script(agent_id, "get_metrics")
        out = _metrics(script.agent)
        out["exit_code"] = script.exit_code
        return out
