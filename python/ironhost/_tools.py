"""``@ironhost.tool``: tool calls through the policy chain.

Each call is shown to the policies (``on-tool-call``) with its arguments as JSON; they may let it
run (possibly with rewritten arguments), refuse it, or answer it themselves (a circuit breaker's
fallback). After the tool ran, its result or error goes through ``on-tool-result``. When no policy
changes anything, the function's own return value (the same object) goes back to the caller.
Outside any agent (see ``_context``) a tool is a plain function call.
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any, Callable, Optional, Tuple, TypeVar, Union, overload

from . import _context

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


class _Plan:
    __slots__ = ("agent", "ticket", "bound", "result")

    def __init__(
        self, agent: Any, ticket: Any, bound: Optional[inspect.BoundArguments], result: Any
    ) -> None:
        self.agent = agent
        self.ticket = ticket
        self.bound = bound
        self.result = result


def _begin(name: str, sig: inspect.Signature, args: tuple, kwargs: dict) -> Optional[_Plan]:
    """The plan for a call; None outside any agent (the call is not governed)."""
    agent = _context.target()
    if agent is None:
        return None
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    shown = {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
    sent = _json(shown)
    ticket, text = agent.tool_begin(name, sent)
    if ticket is None:
        return _Plan(agent, None, None, json.loads(text))
    if text != sent:
        bound.arguments.update(json.loads(text))
    return _Plan(agent, ticket, bound, None)


def _end_ok(plan: _Plan, result: Any) -> Any:
    changed, ok, payload = plan.agent.tool_end(plan.ticket, True, _json(result), "")
    if not changed:
        return result
    if ok:
        return json.loads(payload)
    raise ToolError(payload)


def _end_error(plan: _Plan, exc: BaseException) -> Any:
    kind, message = _classify(exc)
    changed, ok, payload = plan.agent.tool_end(plan.ticket, False, message, kind)
    if changed and ok:
        return json.loads(payload)
    raise exc


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
                plan = _begin(tool_name, sig, args, kwargs)
                if plan is None:
                    return await fn(*args, **kwargs)
                if plan.ticket is None:
                    return plan.result
                assert plan.bound is not None
                try:
                    result = await fn(*plan.bound.args, **plan.bound.kwargs)
                except Exception as exc:
                    return _end_error(plan, exc)
                return _end_ok(plan, result)

            async_wrapper.__ironhost_tool__ = tool_name  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            plan = _begin(tool_name, sig, args, kwargs)
            if plan is None:
                return fn(*args, **kwargs)
            if plan.ticket is None:
                return plan.result
            assert plan.bound is not None
            try:
                result = fn(*plan.bound.args, **plan.bound.kwargs)
            except Exception as exc:
                return _end_error(plan, exc)
            return _end_ok(plan, result)

        wrapper.__ironhost_tool__ = tool_name  # type: ignore[attr-defined]
        return wrapper

    if callable(name):
        return decorate(name, name.__name__)
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError("@ironhost.tool takes a non-empty tool name")
    return lambda fn: decorate(fn, name or fn.__name__)
