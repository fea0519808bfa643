"""Type stub for ``ironhost._native``: the host library as a Python module.

Under ``ironhost start`` the host builds this module into the agent's interpreter, and
``hosted()`` is the agent it runs. From a pip install it is the extension module, and
``open_agent`` opens agents in this process. Both are ``Agent``: one type, the same calls (the
pure-Python layer calls them through ``ironhost._target.Target``, which ``Agent`` satisfies).

Errors: a policy's refusal is raised as ``ironhost.PolicyDenied`` (or ``BudgetExceeded``,
``CircuitOpen``, ...); a provider that timed out or could not be reached as the internal
``ironhost.errors._ProviderTimeout`` / ``_ProviderUnreachable``; anything else as
``ironhost.IronhostError`` (``ConfigurationError`` for a bad setting).
"""

from typing import Any, Dict, List, Optional, Tuple

Headers = List[Tuple[str, str]]

class NativeStream:
    """A streamed answer body (``HttpReply.stream``)."""

    def next(self) -> Optional[bytes]:
        """The next bytes the host released (after the chain's ``on-llm-chunk``), blocking
        until there are some; None at the end."""
        ...
    def close(self) -> None:
        """Let the rest of the stream go."""
        ...

class ToolTicket:
    """A tool call the chain let run (``ToolBegin.ticket``); ends with ``Agent.tool_end``."""

class HttpReply:
    """The answer to ``Agent.handle_http``: exactly one of ``body`` and ``stream`` is set."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def body(self) -> Optional[bytes]:
        """The whole body; None when the answer is streamed."""
        ...
    @property
    def stream(self) -> Optional[NativeStream]:
        """The streamed body; None when the answer is whole."""
        ...

class ToolBegin:
    """What ``on-tool-call`` decided (``Agent.tool_begin``): run the tool (``ticket`` and
    ``arguments``) or take ``answer`` as its result."""

    @property
    def ticket(self) -> Optional[ToolTicket]:
        """The call to end with ``tool_end``; None when a policy answered it."""
        ...
    @property
    def arguments(self) -> Optional[str]:
        """The JSON arguments to run the tool with (the ones given, or a policy's rewrite);
        None when answered."""
        ...
    @property
    def answer(self) -> Optional[str]:
        """A policy's JSON result, given instead of running the tool; None when there is a
        ticket."""
        ...

class ToolEnd:
    """What ``on-tool-result`` made of a tool's outcome (``Agent.tool_end``)."""

    @property
    def changed(self) -> bool:
        """Whether a policy changed the outcome; when False, the tool's own result stands."""
        ...
    @property
    def ok(self) -> bool:
        """A result (``payload`` its JSON) or a failure (``payload`` its message)."""
        ...
    @property
    def payload(self) -> Optional[str]: ...

class EgressReply:
    """The host's answer to ``egress_ask``."""

    @property
    def answer(self) -> Dict[str, Any]:
        """``{"ok": [addresses]}`` for a resolve, ``{"ok": true}`` for a connect; ``{"error":
        message, "kind": ..., "errno": ...}`` for a refusal or failure."""
        ...
    @property
    def fd(self) -> Optional[int]:
        """The connected socket's file descriptor, handed over (the caller closes it), for a
        connect that succeeded; else None."""
        ...

class Agent:
    """An agent: one opened in this process (``open_agent``), or the host's agent under
    ``ironhost start`` (``hosted()``), for which ``bundle`` and ``dashboard`` are None,
    ``start_env`` and ``upstreams`` empty (the process-wide table of ``_intercept`` routes its
    calls), ``calls_under_way`` 0, ``stopping`` and ``closed`` False, and ``run_started``,
    ``run_finished``, ``stop`` and ``close`` raise ``IronhostError`` (the host runs it)."""

    @property
    def agent_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def budget_usd(self) -> Optional[float]: ...
    @property
    def bundle(self) -> Optional[str]: ...
    @property
    def dashboard(self) -> Optional[str]:
        """The control plane's URL, when the agent serves it (``api=True``)."""
        ...
    @property
    def start_env(self) -> List[Tuple[str, str]]:
        """Variables the policies set for the agent at its start (``secrets-inject``)."""
        ...
    @property
    def upstreams(self) -> List[Tuple[str, str]]:
        """The agent's upstreams: (name, base URL)."""
        ...
    @property
    def calls_under_way(self) -> int: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def handle_http(
        self, upstream: str, method: str, path: str, headers: Headers, body: bytes
    ) -> HttpReply:
        """A request addressed to the upstream ``upstream``, through the policy chain."""
        ...
    def tool_begin(self, name: str, arguments: str) -> ToolBegin:
        """``on-tool-call`` for the tool ``name`` called with ``arguments`` (JSON)."""
        ...
    def tool_end(self, ticket: ToolTicket, ok: bool, payload: str, kind: str) -> ToolEnd:
        """``on-tool-result``: ``ok`` with the result's JSON in ``payload``, or a failure with its
        message in ``payload`` and its kind in ``kind``."""
        ...
    def current(self) -> Dict[str, Any]:
        """``agent_id``, ``name``, ``environment``, ``state``, ``run``, ``budget_usd`` and
        ``metrics`` (a dict of the live figures); a new dict each call."""
        ...
    def progress(self, done: int, total: Optional[int] = None, unit: Optional[str] = None) -> None: ...
    def unit_done(
        self,
        ok: bool,
        seconds: Optional[float] = None,
        fallback: Optional[str] = None,
        unit: Optional[str] = None,
    ) -> None:
        """One unit of work finished: a ``unit_done`` event. ``ValueError`` naming the argument
        for seconds that are negative or not finite, or an empty, too long (over 64 characters)
        or control-character fallback or unit."""
        ...
    def run_started(self) -> int:
        """A run begins; its number."""
        ...
    def run_finished(self, exit_code: int, run: Optional[int] = None) -> str:
        """The run ``run`` (default: the latest) ended with ``exit_code``; the agent's state."""
        ...
    def stop(self) -> None:
        """Calls in flight end and new ones are refused (``KeyboardInterrupt``)."""
        ...
    def close(self) -> None:
        """Write everything to the store and shut the agent's host down."""
        ...

def open_agent(options: Dict[str, Any]) -> Agent:
    """Open an agent in this process. ``options``: ``name``, ``script``, ``budget``, ``bundle``,
    ``safety_mode``, ``without`` (policies to leave out), ``config``, ``environment``, ``api``,
    ``listen``, ``cwd``, ``env`` (the variables the settings are read from). Refused
    (``IronhostError``) under ``ironhost start``."""
    ...

def hosted() -> Optional[Agent]:
    """The agent ``ironhost start`` runs in this process; None elsewhere."""
    ...

def note_signal(signum: int) -> bool:
    """Record a SIGINT/SIGTERM for the hosted agent's exit code; whether to raise
    ``KeyboardInterrupt`` (the first time)."""
    ...

def egress_ask(request: Dict[str, Any]) -> EgressReply:
    """``egress = "governed-only"``: ask the host to resolve a name (``{"op": "resolve",
    "host", "port"}``) or to connect (``{"op": "connect", "host", "ip", "port",
    "timeout_ms"}``)."""
    ...
