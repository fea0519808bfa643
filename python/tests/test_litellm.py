"""`ironhost._litellm`: which denial an error of a litellm call was raised from, and the hooks on
litellm's seams, against stand-ins (litellm itself runs in tests/compat/, under
`ironhost start`: host/tests/compat_clients.rs)."""

from __future__ import annotations

import sys
import types
from typing import Any, Iterator

import pytest

from ironhost import _litellm
from ironhost.errors import BudgetExceeded, PolicyDenied, _ProviderTimeout


class WrappedError(Exception):
    """What litellm raises in place of the error of a provider call."""


def denied() -> None:
    raise BudgetExceeded("no budget", code="budget_exceeded", policy="budget")


def provider_call() -> None:
    # litellm's provider handler: catches the denial, raises its own error.
    try:
        denied()
    except Exception as e:
        raise WrappedError(str(e)) from e


def caught(call: Any) -> BaseException:
    try:
        call()
    except BaseException as e:
        return e
    raise AssertionError("not raised")


def test_the_denial_itself() -> None:
    # The denial itself, or (when an SDK is loaded) the same denial as an instance that is also
    # that SDK's error base, so the SDK passes it through (`_intercept._passable`).
    e = caught(denied)
    d = _litellm.denial_of(e)
    assert isinstance(d, type(e))
    assert (d.args, d.code, d.policy) == (e.args, e.code, e.policy)


def test_an_error_raised_from_the_calls_denial_gives_the_denial() -> None:
    e = caught(provider_call)
    denial = _litellm.denial_of(e)
    assert isinstance(denial, BudgetExceeded)
    assert (denial.code, denial.policy) == ("budget_exceeded", "budget")


def test_an_error_raised_while_an_earlier_denial_is_handled_is_not_taken_for_it() -> None:
    def other_failure() -> None:
        raise WrappedError("rate limited")  # a litellm error with no denial of its own

    try:
        denied()
    except PolicyDenied as earlier:
        e = caught(other_failure)
        assert e.__context__ is earlier
        assert _litellm.denial_of(e) is None
        # A new denial in a call made while the earlier one is handled is still found.
        e = caught(provider_call)
        assert _litellm.denial_of(e) is not None and _litellm.denial_of(e) is not earlier


def test_internal_errors_and_others_are_not_denials() -> None:
    def timed_out() -> None:
        try:
            raise _ProviderTimeout("slow")
        except _ProviderTimeout:
            raise TimeoutError("read timed out") from None

    assert _litellm.denial_of(caught(timed_out)) is None
    assert _litellm.denial_of(ValueError("x")) is None
    assert _litellm.denial_of(None) is None


@pytest.fixture
def fake_litellm() -> Iterator[types.SimpleNamespace]:
    """A mapping module, and a module that imported its function before the hook."""
    mapping = types.ModuleType("litellm.fake_mapping")
    user = types.ModuleType("litellm.fake_user")
    utils = types.ModuleType("litellm.fake_utils")

    def exception_type(model: Any, original_exception: Any, custom_llm_provider: Any, **kw: Any) -> Any:
        raise WrappedError(f"mapped {original_exception}")

    def _get_wrapper_num_retries(kwargs: Any, exception: Any) -> Any:
        return kwargs.get("num_retries"), kwargs

    mapping.exception_type = exception_type  # type: ignore[attr-defined]
    user.exception_type = exception_type  # type: ignore[attr-defined]
    user.alias = exception_type  # type: ignore[attr-defined]
    utils._get_wrapper_num_retries = _get_wrapper_num_retries  # type: ignore[attr-defined]
    modules = {m.__name__: m for m in (mapping, user, utils)}
    sys.modules.update(modules)
    try:
        yield types.SimpleNamespace(mapping=mapping, user=user, utils=utils, original=exception_type)
    finally:
        for name in modules:
            sys.modules.pop(name, None)


def test_the_mapping_returns_the_denial_and_maps_anything_else(fake_litellm: Any) -> None:
    _litellm._patch_mapping(fake_litellm.mapping)
    mapped = fake_litellm.mapping.exception_type
    assert mapped is not fake_litellm.original
    assert fake_litellm.user.exception_type is mapped and fake_litellm.user.alias is mapped

    e = caught(provider_call)
    denial = mapped(model="m", original_exception=e, custom_llm_provider="openai")
    assert isinstance(denial, BudgetExceeded)
    denial = mapped("m", e, "openai")
    assert isinstance(denial, BudgetExceeded)
    with pytest.raises(WrappedError, match="mapped boom"):
        mapped(model="m", original_exception=ValueError("boom"), custom_llm_provider="openai")
    _litellm._patch_mapping(fake_litellm.mapping)  # once only
    assert fake_litellm.mapping.exception_type is mapped


def test_a_denial_is_not_retried(fake_litellm: Any) -> None:
    _litellm._patch_retries(fake_litellm.utils)
    retries = fake_litellm.utils._get_wrapper_num_retries
    assert retries(kwargs={"num_retries": 2}, exception=caught(denied))[0] is None
    assert retries(kwargs={"num_retries": 2}, exception=WrappedError("x"))[0] == 2
