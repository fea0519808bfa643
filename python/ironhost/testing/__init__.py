"""``ironhost.testing``: test agent code with or without the native host.

- ``MockRuntime``: the ``AgentRuntime`` API in pure Python (no native build), deterministic.
- pytest fixtures (the plugin is registered when the package is installed): ``mock_runtime`` (an
  entered ``MockRuntime``) and ``ironhost_runtime`` (an entered ``AgentRuntime`` on the built-in
  simulator, with its own ironhost home).
- ``assert_budget_exceeded``, ``assert_policy_denied``, ``assert_pii_detected``.
- ``pii_samples`` and the provider response generators.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from .._agent import figures
from ..errors import BudgetExceeded, PolicyDenied
from ._generate import (
    MARKERS,
    PiiSample,
    anthropic_message_response,
    anthropic_stream_events,
    openai_chat_response,
    openai_stream_events,
    pii_samples,
)
from ._mock import PRICES, MockCall, MockRuntime, find_pii

__all__ = [
    "MARKERS",
    "PRICES",
    "MockCall",
    "MockRuntime",
    "PiiSample",
    "anthropic_message_response",
    "anthropic_stream_events",
    "assert_budget_exceeded",
    "assert_pii_detected",
    "assert_policy_denied",
    "find_pii",
    "openai_chat_response",
    "openai_stream_events",
    "pii_samples",
]


class _Expect:
    """Expects a policy's refusal from a block (``with``) or a call; ``value`` is the exception."""

    def __init__(self, kind: type, code: Optional[str], policy: Optional[str], helper: str) -> None:
        self.kind = kind
        self.code = code
        self.policy = policy
        self.helper = helper
        self.value: Optional[PolicyDenied] = None

    def __enter__(self) -> "_Expect":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc is None:
            raise AssertionError(f"{self.helper}: no {self.kind.__name__} was raised")
        if not isinstance(exc, self.kind):
            return False  # a different exception propagates unchanged
        if self.code is not None and exc.code != self.code:
            raise AssertionError(
                f"{self.helper}: expected code {self.code!r}, the denial had {exc.code!r}: {exc}"
            ) from exc
        if self.policy is not None and exc.policy != self.policy:
            raise AssertionError(
                f"{self.helper}: expected policy {self.policy!r}, the denial came from "
                f"{exc.policy!r}: {exc}"
            ) from exc
        self.value = exc
        return True

    def run(self, fn: Callable[..., Any], args: tuple, kwargs: Dict[str, Any]) -> PolicyDenied:
        with self:
            result = fn(*args, **kwargs)
            if hasattr(result, "__await__"):
                import asyncio

                asyncio.run(result)
        assert self.value is not None
        return self.value


def assert_budget_exceeded(fn: Optional[Callable[..., Any]] = None, *args: Any, **kwargs: Any) -> Any:
    """Assert that a budget stopped the code: ``with assert_budget_exceeded(): ...`` or
    ``assert_budget_exceeded(fn, *args)`` (a coroutine function is run to its end). Returns the
    ``BudgetExceeded`` (for a call) or the checker, whose ``value`` is it (for a block)."""
    expect = _Expect(BudgetExceeded, None, None, "assert_budget_exceeded")
    return expect if fn is None else expect.run(fn, args, kwargs)


def assert_policy_denied(
    fn: Optional[Callable[..., Any]] = None,
    *args: Any,
    code: Optional[str] = None,
    policy: Optional[str] = None,
    **kwargs: Any,
) -> Any:
    """Assert that a policy refused: like ``assert_budget_exceeded``, for any ``PolicyDenied``,
    optionally with its ``code`` (``pii_detected``, ``circuit_open``, ...) and ``policy``."""
    expect = _Expect(PolicyDenied, code, policy, "assert_policy_denied")
    return expect if fn is None else expect.run(fn, args, kwargs)


def _figures(source: Any) -> Dict[str, Any]:
    if isinstance(source, dict):
        return source
    if isinstance(source, str):
        raise TypeError("assert_pii_detected: pass a runtime, a protected function or metrics")
    guard = getattr(source, "ironhost", None)
    if guard is not None:
        return guard.metrics()
    if hasattr(source, "get_metrics"):
        return source.get_metrics()
    if hasattr(source, "metrics") and callable(source.metrics):
        return source.metrics()
    if hasattr(source, "current"):
        return figures(source)
    raise TypeError(f"assert_pii_detected: cannot read findings from {source!r}")


def assert_pii_detected(source: Any, kind: Optional[str] = None, count: Optional[int] = None) -> int:
    """Assert that an agent's policies found personal data: ``source`` is a runtime (its own
    agent), a ``@protect_agent`` function, or ``get_metrics()``'s dict. With ``kind``
    (``email``, ``phone``, ``ssn``, ``credit_card``, ...) only that kind counts; with ``count``
    the number must match exactly. Returns the number found."""
    figures = _figures(source)
    if kind is None:
        found = int(figures.get("pii_findings", 0))
        what = "personal data"
    else:
        found = int(figures.get("pii_by_kind", {}).get(kind, 0))
        what = f"{kind} findings"
    if count is None and found == 0:
        raise AssertionError(f"assert_pii_detected: no {what} were found ({figures.get('pii_by_kind')})")
    if count is not None and found != count:
        raise AssertionError(f"assert_pii_detected: expected {count} {what}, found {found}")
    return found
