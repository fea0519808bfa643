"""What a call target offers: the interface every hook calls an agent through.

A *target* is the agent a call belongs to (``_context.target()``). The HTTP hooks
(``_intercept``, ``_clients``) send governed requests to its ``handle_http``; ``@ironhost.tool``,
the framework hooks and ``ironhost.langchain`` run tool steps through ``tool_begin`` /
``tool_end``; ``ironhost.current()``, ``get_metrics()``, ``ironhost.progress()`` and
``ironhost.unit_done()`` read and report through ``current`` / ``progress`` / ``unit_done``.
Targets are:

- ``ironhost._native.Agent``: an agent opened in this process (``@protect_agent``,
  ``AgentRuntime``, ``open_agent``), and, under ``ironhost start``, the host's agent
  (``ironhost._native.hosted()``). Its replies are the native ``HttpReply``, ``ToolBegin`` and
  ``ToolEnd`` classes.
- ``ironhost.testing.MockRuntime``'s pure-Python agent, and test doubles: code that makes its own
  target returns the frozen dataclasses below.

:class:`Target` is a ``typing.Protocol``: nothing inherits from it, and the native classes satisfy
it by their shape. The replies are typed by the protocols ``SupportsHttpReply``,
``SupportsToolBegin`` and ``SupportsToolEnd`` (read-only attributes), which the native classes
and the dataclasses :class:`HttpReply`, :class:`ToolBegin` and :class:`ToolEnd` both satisfy.

Errors: a policy's refusal is raised from the call as ``ironhost.PolicyDenied`` (or a subclass);
a provider that timed out or could not be reached, from ``handle_http`` or a stream's ``next``,
as the internal ``_ProviderTimeout`` / ``_ProviderUnreachable`` (each hook turns them into its
library's own errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

#: Headers as targets take and give them: (name, value) pairs, in order, repeats kept.
Headers = List[Tuple[str, str]]


class ByteStream(Protocol):
    """A streamed answer body: ``next()`` gives the next bytes as the host releases them (after
    the chain's ``on-llm-chunk``), None at the end; ``close()`` lets the rest go. The native
    ``NativeStream`` is one."""

    def next(self) -> Optional[bytes]: ...
    def close(self) -> None: ...


class SupportsHttpReply(Protocol):
    """The answer to a governed request: exactly one of ``body`` (the whole body) and
    ``stream`` (a streamed one) is not None."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Sequence[Tuple[str, str]]: ...
    @property
    def body(self) -> Optional[bytes]: ...
    @property
    def stream(self) -> Optional[ByteStream]: ...


class SupportsToolBegin(Protocol):
    """What ``on-tool-call`` decided: run the tool (``ticket`` and ``arguments`` set, ``answer``
    None) or take ``answer`` as its result (``ticket`` and ``arguments`` None)."""

    @property
    def ticket(self) -> Optional[Any]: ...
    @property
    def arguments(self) -> Optional[str]: ...
    @property
    def answer(self) -> Optional[str]: ...


class SupportsToolEnd(Protocol):
    """What ``on-tool-result`` made of a tool's result or error."""

    @property
    def changed(self) -> bool: ...
    @property
    def ok(self) -> bool: ...
    @property
    def payload(self) -> Optional[str]: ...


class Target(Protocol):
    """The agent a call belongs to (see the module's docstring for what implements it)."""

    @property
    def closed(self) -> bool:
        """True once the agent was closed: it is no longer the fallback target of threads
        without one (``_context``), and its calls fail. ``_context`` reads it with a default of
        False, so a test double may leave it out."""
        ...

    def handle_http(
        self, upstream: str, method: str, path: str, headers: Headers, body: bytes
    ) -> SupportsHttpReply:
        """Send a request addressed to the upstream named ``upstream`` through the policy chain
        (``path`` in origin form, query included) and return the answer. Blocks; called from a
        worker thread by the async hooks."""
        ...

    def tool_begin(self, name: str, arguments: str) -> SupportsToolBegin:
        """``on-tool-call`` for the tool ``name`` called with ``arguments`` (a JSON object).
        Raises ``PolicyDenied`` for a refusal."""
        ...

    def tool_end(self, ticket: Any, ok: bool, payload: str, kind: str) -> SupportsToolEnd:
        """``on-tool-result`` for the call ``ticket`` (from ``tool_begin``): ``ok`` with the
        result as JSON in ``payload``, or a failure with its message in ``payload`` and its kind
        (``timeout``, ``rate-limited``, ``unavailable``, ``invalid-input``, ``exception``,
        ``other``) in ``kind`` (``""`` when ``ok``). The reply says whether a policy changed the
        outcome (``changed``), and if so into what: a result (``ok``, ``payload`` its JSON) or a
        failure (``payload`` its message)."""
        ...

    def current(self) -> Dict[str, Any]:
        """The agent now: ``agent_id``, ``name``, ``environment``, ``state``, ``run``,
        ``budget_usd`` (None without a budget) and ``metrics`` (a dict: ``cost_usd``,
        ``llm_calls``, ``tool_calls``, ``input_tokens``, ``output_tokens``, ``pii_findings``,
        ...). A new dict each call: the caller may keep or change it."""
        ...

    def progress(self, done: int, total: Optional[int] = None, unit: Optional[str] = None) -> None:
        """Report how far the agent is to the control plane."""
        ...

    def unit_done(
        self,
        ok: bool,
        seconds: Optional[float] = None,
        fallback: Optional[str] = None,
        unit: Optional[str] = None,
    ) -> None:
        """Report one unit of work finished (``ironhost.unit_done`` checked the arguments; the
        host checks them again and raises ``ValueError`` naming the bad one)."""
        ...


@dataclass(frozen=True)
class HttpReply:
    """An answer to ``handle_http`` made in Python: ``body`` for a whole body, or ``stream``
    for a streamed one (exactly one of them)."""

    status: int
    headers: Headers
    body: Optional[bytes] = None
    stream: Optional[ByteStream] = None

    def __post_init__(self) -> None:
        if (self.body is None) == (self.stream is None):
            raise ValueError("HttpReply: give exactly one of body and stream")


@dataclass(frozen=True)
class ToolBegin:
    """What ``tool_begin`` decided, made in Python: ``ToolBegin(ticket=t, arguments=json)``
    lets the tool run with ``arguments`` (the ones given, or rewritten);
    ``ToolBegin(answer=json)`` answers the call instead."""

    ticket: Optional[Any] = None
    arguments: Optional[str] = None
    answer: Optional[str] = None

    def __post_init__(self) -> None:
        if self.ticket is None:
            if self.answer is None or self.arguments is not None:
                raise ValueError("ToolBegin: without a ticket, give the answer (and no arguments)")
        elif self.arguments is None or self.answer is not None:
            raise ValueError("ToolBegin: with a ticket, give the arguments (and no answer)")


@dataclass(frozen=True)
class ToolEnd:
    """What ``tool_end`` decided, made in Python: ``ToolEnd(False, ok)`` when no policy changed
    anything; ``ToolEnd(True, True, json)`` for a new result, ``ToolEnd(True, False, message)``
    for a failure."""

    changed: bool
    ok: bool
    payload: Optional[str] = None
