"""``@ironhost.tool``: tool calls through the policy chain.

Each call is shown to the policies (``on-tool-call``) with its arguments as JSON; they may let it
run (possibly with rewritten arguments), refuse it, or answer it themselves (a circuit breaker's
fallback). After the tool ran, its result or error goes through ``on-tool-result``. When no policy
changes anything, the function's own return value (the same object) goes back to the caller.
Outside any agent (see ``_context``) a tool is a plain function call.

``run_tool`` / ``arun_tool`` are the same path for any callable: the hooks on agent frameworks'
tools (``_frameworks``) run each framework tool call through them.
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple, TypeVar, Union, overload

from . import _context
from ._target import SupportsToolEnd, Target
from .errors import IronhostError, PolicyDenied

F = TypeVar("F", bound=Callable[..., Any])

#: How a tool can fail, as policies see it.
KINDS = ("timeout", "rate-limited", "unavailable", "invalid-input", "exception", "other")


class ToolError(Exception):
    """Raise from a tool to say how it failed, so policies (a circuit breaker) can tell a rate
    limit from an outage from bad input. ``kind`` is one of ``KINDS``."""

    def __init__(self, message: str, kind: str = "exception") -> None:
        if kind not in KINDS:
            raise ValueError(f"ToolError kind {kind!r} is not one of {', '.join(KINDS)}")
        super().__init__(message)
        self.kind = kind


def _classify(exc: BaseException) -> Tuple[str, str]:
    if isinstance(exc, ToolError):
        return exc.kind, str(exc)
    name = type(exc).__name__
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        kind = "timeout"
    elif status == 429 or "RateLimit" in name:
        kind = "rate-limited"
    elif isinstance(exc, ConnectionError) or "Connect" in name or "Unavailable" in name:
        kind = "unavailable"
    elif isinstance(exc, (ValueError, TypeError)):
        kind = "invalid-input"
    else:
        kind = "exception"
    return kind, f"{name}: {exc}"


def _json(value: Any) -> str:
    # Anything JSON cannot hold is shown to policies as its text.
    return json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)


def _decoded(text: Optional[str]) -> Any:
    """A result a policy gave (a ``ToolBegin.answer``, a changed ``ToolEnd.payload``)."""
    if text is None:
        raise IronhostError("the agent's tool reply carries no result (a target out of contract)")
    return json.loads(text)


#: How a framework turns a refusal (``PolicyDenied``, or a ``ToolError`` a policy made of the
#: result) into the error it expects from a failing tool; None raises the refusal itself.
Refusal = Optional[Callable[[Exception], Any]]
#: A framework's own name for how a tool failed (its exception), or None for ``_classify``'s.
Classify = Optional[Callable[[BaseException], Optional[str]]]
#: Whether a tool's result is a failure the framework reports as a value: ``(kind, message)``.
Failure = Optional[Callable[[Any], Optional[Tuple[str, str]]]]
#: How a result is shown to policies (JSON values), and how the result a policy rewrote is
#: made from the original, its view and the new JSON; None: the result itself, and the new JSON.
View = Optional[Callable[[Any], Any]]
Restore = Optional[Callable[[Any, Any, Any], Any]]


class _Refused(Exception):
    """Internal: carries what a ``Refusal`` returned when it is a value, not an exception (a
    framework whose failing tools return an error result)."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


class _Plan:
    __slots__ = ("agent", "ticket", "arguments", "result")

    def __init__(self, agent: Target, ticket: Any, arguments: Dict[str, Any], result: Any) -> None:
        self.agent = agent
        self.ticket = ticket
        self.arguments = arguments
        self.result = result


def _refuse(exc: Exception, refusal: Refusal) -> BaseException:
    if refusal is None:
        return exc
    made = refusal(exc)
    if isinstance(made, BaseException):
        made.__cause__ = exc
        return made
    return _Refused(made)


def _begin(agent: Target, name: str, arguments: Dict[str, Any], refusal: Refusal) -> _Plan:
    """``on-tool-call``: the plan for a call (answered already when ``ticket`` is None). The
    arguments are the same dict when no policy changed them, a new one when one did."""
    sent = _json(arguments)
    try:
        begun = agent.tool_begin(name, sent)
    except PolicyDenied as exc:
        raise _refuse(exc, refusal)
    if begun.ticket is None:
        return _Plan(agent, None, arguments, _decoded(begun.answer))
    text = begun.arguments
    if text is not None and text != sent:
        arguments = {**arguments, **json.loads(text)}
    return _Plan(agent, begun.ticket, arguments, None)


def _tool_end(plan: _Plan, ok: bool, payload: str, kind: str, refusal: Refusal) -> SupportsToolEnd:
    try:
        return plan.agent.tool_end(plan.ticket, ok, payload, kind)
    except PolicyDenied as exc:
        raise _refuse(exc, refusal)


def _end_ok(
    plan: _Plan, result: Any, refusal: Refusal, failure: Failure, view: View, restore: Restore
) -> Any:
    failed = failure(result) if failure is not None else None
    if failed is not None:
        # A result the framework counts as a failure (CrewAI's ToolFailure): shown as one.
        kind, message = failed
        end = _tool_end(plan, False, message, kind, refusal)
        return _decoded(end.payload) if end.changed and end.ok else result
    shown = view(result) if view is not None else result
    end = _tool_end(plan, True, _json(shown), "", refusal)
    if not end.changed:
        return result
    if end.ok:
        new = _decoded(end.payload)
        return restore(result, shown, new) if restore is not None else new
    raise _refuse(ToolError(end.payload or "the tool's result was refused"), refusal)


def _end_error(plan: _Plan, exc: Exception, refusal: Refusal, classify: Classify) -> Any:
    kind, message = _classify(exc)
    if classify is not None:
        kind = classify(exc) or kind
    end = _tool_end(plan, False, message, kind, refusal)
    if end.changed and end.ok:
        return _decoded(end.payload)
    raise exc


def run_tool(
    name: str,
    arguments: Dict[str, Any],
    call: Callable[[Dict[str, Any]], Any],
    *,
    agent: Optional[Target] = None,
    refusal: Refusal = None,
    classify: Classify = None,
    failure: Failure = None,
    view: View = None,
    restore: Restore = None,
) -> Any:
    """Run ``call(arguments)`` as the governed tool ``name``: the policies see the call
    (``arguments`` as JSON) and may let it run (``call`` gets the arguments, the same dict
    unless a policy rewrote them), answer it (the answer is returned, ``call`` does not run) or
    refuse it (``PolicyDenied``, or what ``refusal`` makes of it: an exception to raise or a
    value to return). The result, or the exception ``call`` raised (re-raised unless a policy
    answers instead), goes through ``on-tool-result``. ``classify`` may name an exception's
    kind; ``failure`` may say that a result is a failure (its kind and message); ``view`` and
    ``restore`` show a result that is not JSON and take a policy's rewrite back into it.
    ``agent`` defaults to the current one; outside any agent ``call`` just runs."""
    if agent is None:
        agent = _context.target()
        if agent is None:
            return call(arguments)
    try:
        plan = _begin(agent, name, arguments, refusal)
        if plan.ticket is None:
            return plan.result
        try:
            result = call(plan.arguments)
        except Exception as exc:
            return _end_error(plan, exc, refusal, classify)
        return _end_ok(plan, result, refusal, failure, view, restore)
    except _Refused as refused:
        return refused.value


async def arun_tool(
    name: str,
    arguments: Dict[str, Any],
    call: Callable[[Dict[str, Any]], Awaitable[Any]],
    *,
    agent: Optional[Target] = None,
    refusal: Refusal = None,
    classify: Classify = None,
    failure: Failure = None,
    view: View = None,
    restore: Restore = None,
) -> Any:
    """``run_tool`` for a coroutine: ``call(arguments)`` is awaited."""
    if agent is None:
        agent = _context.target()
        if agent is None:
            return await call(arguments)
    try:
        plan = _begin(agent, name, arguments, refusal)
        if plan.ticket is None:
            return plan.result
        try:
            result = await call(plan.arguments)
        except Exception as exc:
            return _end_error(plan, exc, refusal, classify)
        return _end_ok(plan, result, refusal, failure, view, restore)
    except _Refused as refused:
        return refused.value


def _bound(
    sig: inspect.Signature, args: tuple, kwargs: dict
) -> Tuple[inspect.BoundArguments, Dict[str, Any]]:
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    shown = {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
    return bound, shown


@overload
def tool(name: F) -> F: ...
@overload
def tool(name: Optional[str] = None) -> Callable[[F], F]: ...


def tool(name: Union[str, Callable[..., Any], None] = None) -> Any:
    """Mark a function (sync or async) as a tool named ``name`` (default: the function's name)."""

    def decorate(fn: Callable[..., Any], tool_name: str) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                agent = _context.target()
                if agent is None:
                    return await fn(*args, **kwargs)
                bound, shown = _bound(sig, args, kwargs)

                def call(arguments: Dict[str, Any]) -> Awaitable[Any]:
                    bound.arguments.update(arguments)
                    return fn(*bound.args, **bound.kwargs)

                return await arun_tool(tool_name, shown, call, agent=agent)

            async_wrapper.__ironhost_tool__ = tool_name  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            agent = _context.target()
            if agent is None:
                return fn(*args, **kwargs)
            bound, shown = _bound(sig, args, kwargs)

            def call(arguments: Dict[str, Any]) -> Any:
                bound.arguments.update(arguments)
                return fn(*bound.args, **bound.kwargs)

            return run_tool(tool_name, shown, call, agent=agent)

        wrapper.__ironhost_tool__ = tool_name  # type: ignore[attr-defined]
        return wrapper

    if callable(name):
        return decorate(name, name.__name__)
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError("@ironhost.tool takes a non-empty tool name")
    return lambda fn: decorate(fn, name or fn.__name__)
