"""Lets a policy's denial through litellm unchanged.

litellm catches every exception of a provider call and raises one of its own instead, so a
denial (``ironhost.PolicyDenied`` or a subclass, raised by the HTTP hooks of ``_intercept`` /
``_clients`` under litellm) would reach the agent's code as ``litellm.InternalServerError``
(status 500), the denial only among its causes, and litellm's ``num_retries`` would send the
refused call again. ``_clients`` calls :func:`install` when litellm is imported; it hooks the
places where litellm decides what the caller gets (modules of ``litellm``), each when its
module is imported:

- ``litellm_core_utils.exception_mapping_utils.exception_type``: every error of a call is mapped
  here (sync and async, every endpoint, a stream refused before its first chunk). When the error
  is a denial, or was raised from one this call raised (:func:`denial_of`), the denial is the
  result, as litellm returns its own exceptions unmapped. Replaced in its module and in every
  module already holding it (``litellm.main``, ``litellm.exception_type``, ...); modules
  imported later take it from there.
- ``litellm_core_utils.streaming_handler.CustomStreamWrapper._handle_stream_fallback_error``: a
  stream refused part way (a chunk policy) would raise its mapped error wrapped in a
  ``MidStreamFallbackError``; the denial is raised instead.
- ``utils._get_wrapper_num_retries``: the retries of a failed async call (``num_retries``) are
  none for a denial. (A sync call retries ``openai.APIError`` only, which a denial is not.)
- ``router_rust.core.failure_kind``: what a ``Router`` makes of a failed attempt. A denial is a
  ``GuardrailIntervention``, litellm's kind for an intentional block, which the Router neither
  retries nor falls back from.

Any other exception is mapped, wrapped and retried by litellm as before. A seam missing from
another litellm version is left alone: the calls are governed all the same, the denial then
reaches the code wrapped as litellm wraps it.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, Optional, Set

from . import _intercept
from .errors import IronhostError, _ProviderTimeout, _ProviderUnreachable

_PATCHED = "__ironhost_litellm_patched__"


def _is_denial(exc: Any) -> bool:
    """A refusal by ironhost (not the internal errors that become the library's own)."""
    return isinstance(exc, IronhostError) and not isinstance(exc, (_ProviderTimeout, _ProviderUnreachable))


def _running_above(exc: BaseException) -> Set[int]:
    """The frames (ids) running above the one that caught ``exc``, or above this one."""
    tb = exc.__traceback__
    frame = tb.tb_frame.f_back if tb is not None else sys._getframe(1)
    above = set()
    while frame is not None:
        above.add(id(frame))
        frame = frame.f_back
    return above


def denial_of(exc: Any) -> Optional[BaseException]:
    """The denial ``exc`` is, or was raised from (``__cause__``/``__context__``, nearest first),
    as the agent's code gets it (``_intercept._passable``); else None.

    Only a denial raised in the call that failed counts: code handling an earlier denial
    (``except BudgetExceeded: litellm.completion(...)``) makes it the context of whatever that
    call raises. A denial is the call's own if it was caught inside the call, not by a frame
    still running above the one that caught ``exc`` (the code handling the earlier one)."""
    if _is_denial(exc):
        return _intercept._passable(exc)
    if not isinstance(exc, BaseException):
        return None
    seen = {id(exc)}
    link = exc.__cause__ or exc.__context__
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if _is_denial(link):
            tb = link.__traceback__
            if tb is not None and id(tb.tb_frame) in _running_above(exc):
                return None  # an earlier call's
            return _intercept._passable(link)
        link = link.__cause__ or link.__context__
    return None


def _patch_mapping(module: Any) -> None:
    original = getattr(module, "exception_type", None)
    if original is None or getattr(original, _PATCHED, False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def exception_type(*args: Any, **kwargs: Any) -> Any:
        try:
            error = signature.bind(*args, **kwargs).arguments.get("original_exception")
        except TypeError:
            error = None
        denial = denial_of(error)
        if denial is not None:
            return denial
        return original(*args, **kwargs)

    setattr(exception_type, _PATCHED, True)
    for name, loaded in list(sys.modules.items()):
        if loaded is None or not (name == "litellm" or name.startswith("litellm.")):
            continue
        for attr, value in list(getattr(loaded, "__dict__", {}).items()):
            if value is original:
                setattr(loaded, attr, exception_type)


def _patch_streaming(module: Any) -> None:
    cls = getattr(module, "CustomStreamWrapper", None)
    original = getattr(cls, "_handle_stream_fallback_error", None)
    if original is None or getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def _handle_stream_fallback_error(self: Any, e: Exception) -> Any:
        try:
            return original(self, e)
        except Exception as raised:
            # The error as mapped (by ``exception_type``: the denial), raised or wrapped.
            mapped = (raised, getattr(raised, "original_exception", None))
            denial = next((_intercept._passable(m) for m in mapped if _is_denial(m)), None)
            if denial is None:
                raise
        raise denial  # (outside the handler: not chained to the wrapper it replaces)

    setattr(_handle_stream_fallback_error, _PATCHED, True)
    cls._handle_stream_fallback_error = _handle_stream_fallback_error


def _patch_retries(module: Any) -> None:
    original = getattr(module, "_get_wrapper_num_retries", None)
    if original is None or getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def _get_wrapper_num_retries(*args: Any, **kwargs: Any) -> Any:
        num_retries, request = original(*args, **kwargs)
        exception = kwargs.get("exception", args[1] if len(args) > 1 else None)
        return (None if _is_denial(exception) else num_retries), request

    setattr(_get_wrapper_num_retries, _PATCHED, True)
    module._get_wrapper_num_retries = _get_wrapper_num_retries


def _patch_router(module: Any) -> None:
    original = getattr(module, "failure_kind", None)
    if original is None or getattr(original, _PATCHED, False):
        return
    if "GuardrailIntervention" not in getattr(module, "_FAILURE_KINDS", ()):
        return

    @functools.wraps(original)
    def failure_kind(error: BaseException) -> str:
        return "GuardrailIntervention" if _is_denial(error) else original(error)

    setattr(failure_kind, _PATCHED, True)
    module.failure_kind = failure_kind


def install(litellm: Any) -> None:
    """Hook litellm (the package, just imported)."""
    from ._clients import when_imported

    when_imported("litellm.litellm_core_utils.exception_mapping_utils", _patch_mapping)
    when_imported("litellm.litellm_core_utils.streaming_handler", _patch_streaming)
    when_imported("litellm.utils", _patch_retries)
    when_imported("litellm.router_rust.core", _patch_router)
