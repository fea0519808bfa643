"""Exceptions raised by ironhost into agent code.

A policy's denial surfaces as `PolicyDenied` (or one of its subclasses), raised from the SDK call
or tool call the policy refused. The official SDKs let these pass unchanged (they are not
transport errors), so agent code can catch them by type.
"""

from __future__ import annotations

from typing import Optional


class IronhostError(Exception):
    """Base class of every ironhost exception."""


class PolicyDenied(IronhostError):
    """A policy refused the call.

    Attributes:
        code: the policy's machine-readable reason, e.g. ``pii_detected``.
        policy: the name of the policy that refused.
        retry_after: seconds after which a retry may succeed, if the policy said.
    """

    def __init__(
        self,
        message: str,
        code: str = "denied",
        policy: str = "",
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.policy = policy
        self.retry_after = retry_after

    def __str__(self) -> str:
        who = f"policy `{self.policy}`" if self.policy else "a policy"
        return f"{who} denied the call ({self.code}): {self.message}"


class BudgetExceeded(PolicyDenied):
    """The agent's budget does not cover the call."""


class UnpricedModel(PolicyDenied):
    """The model has no price, so the budget cannot bound what it spends (code
    ``unpriced_model``): price it, or alias it to a priced model."""


class CircuitOpen(PolicyDenied):
    """The service is failing; its circuit is open and no fallback was available."""


class ConfigurationError(IronhostError):
    """ironhost cannot make the call as configured (for example no provider key in live mode)."""


class _ProviderTimeout(IronhostError):
    """Internal: the provider did not answer in time (mapped to the HTTP library's timeout)."""


class _ProviderUnreachable(IronhostError):
    """Internal: the provider could not be reached (mapped to the HTTP library's connect error)."""


def _denial(message: str, code: str, policy: str, retry_after: Optional[float]) -> PolicyDenied:
    """The exception for a denial code."""
    if code == "unpriced_model":
        cls = UnpricedModel
    elif code.startswith("budget"):
        cls = BudgetExceeded
    elif code == "circuit_open":
        cls = CircuitOpen
    else:
        cls = PolicyDenied
    return cls(message, code=code, policy=policy, retry_after=retry_after)
