"""Routes the official SDKs' HTTP calls through ironhost.

The current ``openai`` and ``anthropic`` SDKs sit on ``httpx2``; older releases and other
libraries on ``httpx``. Both send every request through ``HTTPTransport.handle_request`` /
``AsyncHTTPTransport.handle_async_request``; replacing those two methods routes every SDK call
(sync, async, streaming) for the provider hosts to the host, as bytes, with no socket. Requests
to any other host, and requests made outside any agent (see ``_context``), go out unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Dict, Iterable, List, Set, Tuple

from . import _context
from .errors import IronhostError, _ProviderTimeout, _ProviderUnreachable

#: The providers' hosts: requests to them go through the chain.
PROVIDER_HOSTS = frozenset({"api.openai.com", "api.anthropic.com"})
#: More hosts, under ``ironhost start`` (the host's ``llm.intercept-hosts``). An SDK agent has
#: its own list (``Agent.intercept_hosts``), which governs only its calls.
HOSTS = set(PROVIDER_HOSTS)

_PATCHED = "__ironhost_patched__"


#: The base classes an SDK lets through its transport unchanged (``anthropic``, and ``openai``
#: before 3.x, turn any other exception from the transport into a retried ``APIConnectionError``).
_PASSED_THROUGH = (("anthropic", "AnthropicError"), ("openai", "OpenAIError"))
_MIXED: Dict[Tuple[type, ...], type] = {}


def _passable(exc: BaseException) -> BaseException:
    """``exc`` (a policy's refusal) as an instance of its own class that is also each loaded
    SDK's own error base, so the SDK raises it unchanged and unretried; ``except
    ironhost.BudgetExceeded`` still catches it."""
    if not isinstance(exc, IronhostError):
        return exc
    bases = []
    for module, name in _PASSED_THROUGH:
        base = getattr(sys.modules.get(module), name, None)
        if isinstance(base, type) and not isinstance(exc, base):
            bases.append(base)
    if not bases:
        return exc
    cls = type(exc)
    key = (cls, *bases)
    mixed = _MIXED.get(key)
    if mixed is None:
        mixed = type(cls.__name__, key, {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
        _MIXED[key] = mixed
    out = mixed.__new__(mixed)
    out.args = exc.args
    out.__dict__.update(exc.__dict__)
    return out


def _route(request: Any) -> Any:
    """The agent that answers this request, or None to send it out unchanged."""
    host = request.url.host
    if host not in HOSTS and host not in _AGENT_HOSTS:
        return None
    target = _context.target()
    if target is None or host in PROVIDER_HOSTS:
        return target
    own = getattr(target, "intercept_hosts", None)
    if own is None:  # the host's module, or the mock: the process-wide list
        return target if host in HOSTS else None
    return target if host in own else None


def _headers(request: Any) -> List[Tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]


def _path(request: Any) -> str:
    return request.url.raw_path.decode("ascii", "replace")


async def _in_thread(fn: Any, *args: Any) -> Any:
    # The native call releases the GIL; a worker thread keeps the event loop free meanwhile.
    try:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(lambda: fn(*args))
    except ImportError:  # pragma: no cover - the SDKs depend on anyio
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args))


def _patch(module: Any) -> None:
    transports = module.HTTPTransport, module.AsyncHTTPTransport
    if getattr(transports[0], _PATCHED, False):
        return

    def fail(exc: BaseException, request: Any) -> BaseException:
        if isinstance(exc, _ProviderTimeout):
            return module.ReadTimeout(str(exc), request=request)
        if isinstance(exc, _ProviderUnreachable):
            return module.ConnectError(str(exc), request=request)
        return _passable(exc)

    class NativeStream(module.SyncByteStream):
        def __init__(self, native: Any, request: Any) -> None:
            self._native = native
            self._request = request

        def __iter__(self) -> Iterable[bytes]:
            while True:
                try:
                    chunk = self._native.next()
                except IronhostError as exc:
                    raise fail(exc, self._request) from None
                if chunk is None:
                    return
                yield chunk

        def close(self) -> None:
            self._native.close()

    class AsyncNativeStream(module.AsyncByteStream):
        def __init__(self, native: Any, request: Any) -> None:
            self._native = native
            self._request = request

        async def __aiter__(self) -> Any:
            while True:
                try:
                    chunk = await _in_thread(self._native.next)
                except IronhostError as exc:
                    raise fail(exc, self._request) from None
                if chunk is None:
                    return
                yield chunk

        async def aclose(self) -> None:
            self._native.close()

    def respond(request: Any, answer: Any, stream_cls: Any) -> Any:
        status, headers, payload = answer
        if isinstance(payload, bytes):
            return module.Response(status, headers=headers, content=payload, request=request)
        return module.Response(
            status, headers=headers, stream=stream_cls(payload, request), request=request
        )

    sync_original = transports[0].handle_request
    async_original = transports[1].handle_async_request

    def handle_request(self: Any, request: Any) -> Any:
        agent = _route(request)
        if agent is None:
            return sync_original(self, request)
        body = request.read()
        try:
            answer = agent.handle_http(request.method, _path(request), _headers(request), body)
        except IronhostError as exc:
            raise fail(exc, request) from None
        return respond(request, answer, NativeStream)

    async def handle_async_request(self: Any, request: Any) -> Any:
        agent = _route(request)
        if agent is None:
            return await async_original(self, request)
        body = await request.aread()
        try:
            answer = await _in_thread(
                agent.handle_http, request.method, _path(request), _headers(request), body
            )
        except IronhostError as exc:
            raise fail(exc, request) from None
        return respond(request, answer, AsyncNativeStream)

    transports[0].handle_request = handle_request
    transports[1].handle_async_request = handle_async_request
    setattr(transports[0], _PATCHED, True)


#: Every host some SDK agent lists (each governs only its own agent's calls): requests to
#: other hosts skip the look-up of the agent.
_AGENT_HOSTS: Set[str] = set()


def install(extra_hosts: Iterable[str] = (), agent_hosts: Iterable[str] = ()) -> List[str]:
    """Hook every installed HTTP library; returns the names of the ones hooked. ``extra_hosts``
    are intercepted for every call (``ironhost start``); ``agent_hosts`` only for the calls of
    the SDK agent that lists them."""
    HOSTS.update(extra_hosts)
    _AGENT_HOSTS.update(agent_hosts)
    hooked = []
    for name in ("httpx2", "httpx"):
        if importlib.util.find_spec(name) is None:
            continue
        _patch(importlib.import_module(name))
        hooked.append(name)
    return hooked
