"""Routes the official SDKs' HTTP calls through ironhost.

The current ``openai`` and ``anthropic`` SDKs sit on ``httpx2``; older releases and other
libraries on ``httpx``. Both send every request through ``HTTPTransport.handle_request`` /
``AsyncHTTPTransport.handle_async_request``; replacing those two methods routes every SDK call
(sync, async, streaming) for the provider hosts to the host, as bytes, with no socket. Requests
to any other host go out unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Iterable, List, Tuple

from . import _native
from .errors import _ProviderTimeout, _ProviderUnreachable

#: Hosts whose requests go through the chain.
HOSTS = {"api.openai.com", "api.anthropic.com"}

_PATCHED = "__ironhost_patched__"


def _routed(request: Any) -> bool:
    return request.url.host in HOSTS


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
        return exc

    class NativeStream(module.SyncByteStream):
        def __init__(self, native: Any, request: Any) -> None:
            self._native = native
            self._request = request

        def __iter__(self) -> Iterable[bytes]:
            while True:
                try:
                    chunk = self._native.next()
                except (_ProviderTimeout, _ProviderUnreachable) as exc:
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
                except (_ProviderTimeout, _ProviderUnreachable) as exc:
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
        if not _routed(request):
            return sync_original(self, request)
        body = request.read()
        try:
            answer = _native.handle_http(request.method, _path(request), _headers(request), body)
        except (_ProviderTimeout, _ProviderUnreachable) as exc:
            raise fail(exc, request) from None
        return respond(request, answer, NativeStream)

    async def handle_async_request(self: Any, request: Any) -> Any:
        if not _routed(request):
            return await async_original(self, request)
        body = await request.aread()
        try:
            answer = await _in_thread(
                _native.handle_http, request.method, _path(request), _headers(request), body
            )
        except (_ProviderTimeout, _ProviderUnreachable) as exc:
            raise fail(exc, request) from None
        return respond(request, answer, AsyncNativeStream)

    transports[0].handle_request = handle_request
    transports[1].handle_async_request = handle_async_request
    setattr(transports[0], _PATCHED, True)


def install(extra_hosts: Iterable[str] = ()) -> List[str]:
    """Hook every installed HTTP library; returns the names of the ones hooked."""
    HOSTS.update(extra_hosts)
    hooked = []
    for name in ("httpx2", "httpx"):
        if importlib.util.find_spec(name) is None:
            continue
        _patch(importlib.import_module(name))
        hooked.append(name)
    return hooked
