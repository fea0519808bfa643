"""Routes the requests of HTTP libraries other than ``httpx`` through ironhost.

``_intercept`` hooks the ``httpx``/``httpx2`` transports (the official SDKs); this module hooks
every other common client where it hands a request to the network, so a request to a governed
upstream goes through the chain whatever library makes it:

==================  ===========================================================================
library             seam
==================  ===========================================================================
``urllib3``         ``HTTPConnectionPool.urlopen`` (``requests`` and ``PoolManager`` go there):
                    the answer is a real ``urllib3.response.HTTPResponse`` over a real
                    ``http.client.HTTPResponse`` read from HTTP/1.1 bytes made from the
                    host's answer, so ``preload_content=False``, ``stream()``,
                    ``read_chunked()``, ``requests``' ``stream=True`` and ``raw`` all work.
``http.client``     ``HTTPConnection.connect`` / ``HTTPSConnection.connect`` (``urllib.request``
                    and direct users): a connection to a governed host gets a virtual socket
                    that reads each request from the bytes http.client writes and answers it
                    with the host's answer as HTTP/1.1 bytes (a request that turns out not to
                    be governed goes to a real socket, opened then, unchanged).
``httpcore``,       ``ConnectionPool.handle_request`` / ``AsyncConnectionPool
``httpcore2``       .handle_async_request`` (a custom ``httpx`` transport, or direct users).
``aiohttp``         ``BaseConnector.connect``: a governed request gets a virtual connection
                    (aiohttp's own ``ResponseHandler`` over a virtual transport) that reads the
                    request from the bytes aiohttp writes and feeds the answer to aiohttp's
                    parser, so the ``ClientResponse`` is aiohttp's own and ``content``
                    streams. Never pooled (the answer says ``Connection: close``).
==================  ===========================================================================

Each hook asks :func:`_intercept.lookup`; a request it does not route goes to the library's own
code unchanged, so a request is governed by the highest hook it passes and never again below
it (``httpx`` on ``httpcore``, ``requests`` on ``urllib3`` on ``http.client``). Streams are
passed on as the host releases them (chunked framing, one chunk per piece).

Errors: the host's ``_ProviderTimeout`` becomes the library's own timeout error, and
``_ProviderUnreachable`` its own connection error; any other ``IronhostError`` (a policy's
denial) is raised as it is (``_intercept._passable``), through the library unwrapped. litellm,
which wraps every error of a call in its own, is hooked too when it is imported (``_litellm``),
so the denial gets through it as well.

Nothing is imported here: each library is hooked when it is imported (:func:`when_imported`),
or at :func:`install` when it already was.
"""

from __future__ import annotations

import errno
import http
import importlib.util
import inspect
import io
import socket
import sys
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from . import _intercept
from ._imports import when_imported
from ._target import SupportsHttpReply
from .errors import IronhostError, _ProviderTimeout, _ProviderUnreachable

_PATCHED = "__ironhost_clients_patched__"

# -- Requests, read from the bytes a client writes ----------------------------------------------


class _Request(NamedTuple):
    method: str
    #: The request target in origin form (``/v1/chat/completions?x=1``).
    target: str
    #: The headers for the host: as written, without ``Transfer-Encoding`` (the body is whole).
    headers: List[Tuple[str, str]]
    body: bytes
    #: The request exactly as written (to send it on unchanged when it is not governed).
    raw: bytes


class _RequestReader:
    """Reads HTTP/1.1 requests from the bytes written, as they complete."""

    def __init__(self, on_head: Optional[Callable[[List[Tuple[str, str]]], None]] = None) -> None:
        self._buf = bytearray()
        self._on_head = on_head
        self._head: Optional[Tuple[str, str, List[Tuple[str, str]]]] = None
        self._start = 0  # where the body starts in the buffer
        self._length: Optional[int] = None  # None: chunked
        self._chunks: List[bytes] = []
        self._pos = 0  # chunked: how far the body is read

    def feed(self, data: bytes) -> List[_Request]:
        self._buf += data
        done = []
        while True:
            request = self._next()
            if request is None:
                return done
            done.append(request)

    def _next(self) -> Optional[_Request]:
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
            self._head = (method, target, headers)
            self._start = self._pos = end + 4
            framing = {k.lower(): v for k, v in headers}
            if "chunked" in framing.get("transfer-encoding", "").lower():
                self._length = None
            else:
                self._length = int(framing.get("content-length", "0") or 0)
            if self._on_head is not None:
                self._on_head(headers)
        if self._length is not None:
            end = self._start + self._length
            if len(self._buf) < end:
                return None
            body = bytes(self._buf[self._start : end])
        else:
            end = self._read_chunks()
            if end < 0:
                return None
            body = b"".join(self._chunks)
        method, target, headers = self._head
        raw = bytes(self._buf[:end])
        del self._buf[:end]
        self._head, self._chunks = None, []
        return _Request(method, _origin_form(target), _body_headers(headers, body), body, raw)

    def _read_chunks(self) -> int:
        """The end of a complete chunked body, or -1 while more is to come."""
        buf = self._buf
        while True:
            eol = buf.find(b"\r\n", self._pos)
            if eol < 0:
                return -1
            size = int(bytes(buf[self._pos : eol]).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # The trailer section: header lines, then an empty line.
                if buf[eol + 2 : eol + 4] == b"\r\n":
                    return eol + 4
                end = buf.find(b"\r\n\r\n", eol + 2)
                return -1 if end < 0 else end + 4
            if len(buf) < eol + 2 + size + 2:
                return -1
            self._chunks.append(bytes(buf[eol + 2 : eol + 2 + size]))
            self._pos = eol + 2 + size + 2


def _origin_form(target: str) -> str:
    if target.startswith("/"):
        return target
    parts = urlsplit(target)  # absolute form, through a plain HTTP proxy
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _body_headers(headers: List[Tuple[str, str]], body: bytes) -> List[Tuple[str, str]]:
    """The headers of a request whose body is sent whole: no transfer coding, its length."""
    out = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
    if body and not any(k.lower() == "content-length" for k, _ in out):
        out.append(("Content-Length", str(len(body))))
    return out


# -- Answers, as HTTP/1.1 bytes -----------------------------------------------------------------

#: Framing the answer's bytes set themselves.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _head(status: int, headers: List[Tuple[str, str]], length: Optional[int], close: bool = False) -> bytes:
    """The status line and headers of an answer: ``Content-Length`` for ``length`` bytes, or
    ``Transfer-Encoding: chunked`` for a stream (``length`` None)."""
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    for name, value in headers:
        if name.lower() in _FRAMING or any(c in name or c in value for c in "\r\n\0"):
            continue
        lines.append(f"{name}: {value}")
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_LAST_CHUNK = b"0\r\n\r\n"


def _socket_error(exc: IronhostError) -> BaseException:
    """The error a socket would raise: what ``http.client`` users (and ``urllib3``, which maps
    socket errors to its own) see."""
    if isinstance(exc, _ProviderTimeout):
        return socket.timeout(f"timed out ({exc})")
    if isinstance(exc, _ProviderUnreachable):
        return ConnectionResetError(errno.ECONNRESET, f"the provider could not be reached ({exc})")
    return _intercept._passable(exc)


class _AnswerBytes(io.RawIOBase):
    """The host's answer as the bytes of an HTTP/1.1 response; a stream's pieces are read from
    the host when asked for, one chunk each, so they arrive as the host releases them."""

    def __init__(self, answer: SupportsHttpReply) -> None:
        headers = list(answer.headers)
        self._native: Any = answer.stream
        if self._native is None:
            payload = bytes(answer.body or b"")
            self._pending = _head(answer.status, headers, len(payload)) + payload
        else:
            self._pending = _head(answer.status, headers, None)
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._at >= len(self._pending):
            if self._native is None:
                return 0
            try:
                piece = self._native.next()
            except IronhostError as exc:
                self._end()
                raise _socket_error(exc) from None
            if piece is None:
                self._end()
                piece = _LAST_CHUNK
            elif not piece:
                continue
            else:
                piece = _chunk(piece)
            self._pending, self._at = piece, 0
        n = min(len(buffer), len(self._pending) - self._at)
        buffer[:n] = self._pending[self._at : self._at + n]
        self._at += n
        return n

    def _end(self) -> None:
        native, self._native = self._native, None
        if native is not None:
            native.close()

    def close(self) -> None:
        self._end()
        super().close()


class _AnswerSocket:
    """Just enough of a socket for ``http.client.HTTPResponse`` to read an answer from."""

    def __init__(self, answer: _AnswerBytes) -> None:
        self._answer = answer

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        return io.BufferedReader(self._answer)


def _http_response(answer: SupportsHttpReply, method: str, url: str) -> Any:
    """A real ``http.client.HTTPResponse`` of the host's answer, its head read."""
    import http.client

    response = http.client.HTTPResponse(_AnswerSocket(_AnswerBytes(answer)), method=method, url=url)
    response.begin()
    return response


def _body_bytes(body: Any) -> bytes:
    """A request body as http.client or urllib3 would send it."""
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "read"):
        parts = []
        while True:
            block = body.read(65536)
            if not block:
                break
            parts.append(block.encode("utf-8") if isinstance(block, str) else bytes(block))
        return b"".join(parts)
    return b"".join(p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in body)


def _authority(host: str, port: Optional[int], scheme: str) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}.get(scheme):
        return host
    return f"{host}:{port}"


# -- http.client --------------------------------------------------------------------------------


class _VirtualSocket:
    """The socket of an ``http.client`` connection to a governed host. Each request written is
    read whole; a governed one is answered by the host (the answer is read with ``makefile``
    as from a socket), any other goes to a real socket, opened for it, unchanged."""

    def __init__(
        self, conn: Any, open_real: Callable[[], Any], scheme: str, host: str, port: Optional[int]
    ) -> None:
        self._open_real = open_real
        self._scheme, self._host, self._port = scheme, host, port
        self._reader = _RequestReader()
        self._real: Any = None
        self._timeout = getattr(conn, "timeout", None)
        #: One per request, in order: the host's answer, or None for the real socket's.
        self._answers: Deque[Optional[_AnswerBytes]] = deque()

    def sendall(self, data: Any) -> None:
        data = bytes(memoryview(data))  # TypeError for an iterable, as a socket's
        for request in self._reader.feed(data):
            self._dispatch(request)

    def send(self, data: Any) -> int:
        self.sendall(data)
        return len(data)

    def _dispatch(self, request: _Request) -> None:
        route = _intercept.lookup(self._scheme, self._host, self._port, request.target)
        if route is None:
            if self._real is None:
                self._real = self._open_real()
            self._real.sendall(request.raw)
            self._answers.append(None)
            return
        try:
            answer = route.send(request.method, request.target, request.headers, request.body)
        except IronhostError as exc:
            if isinstance(exc, _ProviderUnreachable):
                raise ConnectionRefusedError(
                    errno.ECONNREFUSED, f"the provider could not be reached ({exc})"
                ) from None
            raise _socket_error(exc) from None
        self._answers.append(_AnswerBytes(answer))

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        answer = self._answers.popleft() if self._answers else None
        if answer is not None:
            return io.BufferedReader(answer)
        if self._real is not None:
            return self._real.makefile(mode, *args, **kwargs)
        return io.BytesIO(b"")  # nothing was sent: nothing comes back (RemoteDisconnected)

    def close(self) -> None:
        # Answers already read from (``makefile``) stay readable, as from a closed socket.
        while self._answers:
            answer = self._answers.popleft()
            if answer is not None:
                answer.close()
        real, self._real = self._real, None
        if real is not None:
            real.close()

    def settimeout(self, timeout: Optional[float]) -> None:
        self._timeout = timeout
        if self._real is not None:
            self._real.settimeout(timeout)

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def setsockopt(self, *args: Any) -> None:
        if self._real is not None:
            self._real.setsockopt(*args)

    def fileno(self) -> int:
        return self._real.fileno() if self._real is not None else -1

    def __getattr__(self, name: str) -> Any:
        real = self.__dict__.get("_real")
        if real is None:
            raise AttributeError(name)
        return getattr(real, name)


def _patch_http_client(client: Any) -> None:
    if getattr(client.HTTPConnection, _PATCHED, False):
        return
    hooks = []
    for cls in (client.HTTPConnection, client.HTTPSConnection):
        original = cls.__dict__["connect"]

        def connect(self: Any, _original: Any = original) -> None:
            if self.__dict__.get("_ironhost_real") or type(self).connect not in hooks:
                # Opening the real socket, or a subclass with a connect of its own.
                return _original(self)
            tunnel = getattr(self, "_tunnel_host", None)
            host = tunnel or self.host
            if host.lower() not in _intercept._HOSTS:
                return _original(self)
            port = getattr(self, "_tunnel_port", None) if tunnel else self.port
            scheme = "https" if isinstance(self, client.HTTPSConnection) else "http"

            def open_real() -> Any:
                self._ironhost_real = True
                try:
                    _original(self)
                finally:
                    del self._ironhost_real
                real, self.sock = self.sock, virtual
                return real

            virtual = _VirtualSocket(self, open_real, scheme, host, port)
            self.sock = virtual

        hooks.append(connect)
        cls.connect = connect
    setattr(client.HTTPConnection, _PATCHED, True)


# -- urllib3 ------------------------------------------------------------------------------------


def _patch_urllib3(urllib3: Any) -> None:
    from urllib3 import connectionpool, exceptions
    from urllib3 import response as responses
    from urllib3._collections import HTTPHeaderDict
    from urllib3.util.retry import Retry
    from urllib3.util.url import parse_url

    pool_cls = connectionpool.HTTPConnectionPool
    if getattr(pool_cls, _PATCHED, False):
        return
    original = pool_cls.urlopen
    signature = inspect.signature(original)
    accepted = set(inspect.signature(responses.HTTPResponse).parameters)

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith("/"):
            scheme, host, port, target = self.scheme, self.host, self.port, url
        else:  # absolute: a plain HTTP proxy's pool
            parts = parse_url(url)
            scheme, host, port = parts.scheme or self.scheme, parts.host or "", parts.port
            target = parts.request_uri
        route = _intercept.lookup(scheme, host, port, target.split("?", 1)[0])
        if route is None:
            return original(self, method, url, *args, **kwargs)
        call = signature.bind(self, method, url, *args, **kwargs)
        call.apply_defaults()
        a = call.arguments
        given = a["headers"] if a["headers"] is not None else self.headers
        headers = [(str(k), str(v)) for k, v in HTTPHeaderDict(given).items()]
        body = _body_bytes(a["body"])
        headers = _body_headers(headers, body)
        if not any(k.lower() == "host" for k, _ in headers):
            headers.insert(0, ("Host", _authority(host, port, scheme)))
        try:
            answer = route.send(method, target, headers, body)
        except IronhostError as exc:
            if isinstance(exc, _ProviderTimeout):
                raise exceptions.ReadTimeoutError(self, url, f"Read timed out. ({exc})") from None
            if isinstance(exc, _ProviderUnreachable):
                reason = exceptions.NewConnectionError(self, f"the provider could not be reached ({exc})")
                raise exceptions.MaxRetryError(self, url, reason) from None
            raise _intercept._passable(exc) from None
        original_response = _http_response(answer, method, url)
        options = dict(
            body=original_response,
            headers=HTTPHeaderDict(original_response.msg.items()),
            status=original_response.status,
            version=original_response.version,
            version_string="HTTP/1.1",
            reason=original_response.reason,
            preload_content=a["preload_content"],
            decode_content=a["decode_content"],
            original_response=original_response,
            pool=self,
            connection=None,
            retries=Retry.from_int(a["retries"], redirect=a["redirect"], default=self.retries),
            request_method=method,
            request_url=url,
        )
        options.update(a.get("response_kw") or {})
        return responses.HTTPResponse(**{k: v for k, v in options.items() if k in accepted})

    pool_cls.urlopen = urlopen
    setattr(pool_cls, _PATCHED, True)


# -- httpcore, httpcore2 ------------------------------------------------------------------------


def _patch_httpcore(module: Any) -> None:
    sync_cls, async_cls = module.ConnectionPool, module.AsyncConnectionPool
    if getattr(sync_cls, _PATCHED, False):
        return

    def fail(exc: IronhostError, started: bool) -> BaseException:
        if isinstance(exc, _ProviderTimeout):
            return module.ReadTimeout(str(exc))
        if isinstance(exc, _ProviderUnreachable):
            return (module.ReadError if started else module.ConnectError)(str(exc))
        return _intercept._passable(exc)

    class Stream:
        def __init__(self, native: Any) -> None:
            self._native = native

        def __iter__(self) -> Any:
            while True:
                try:
                    piece = self._native.next()
                except IronhostError as exc:
                    raise fail(exc, True) from None
                if piece is None:
                    return
                yield piece

        def close(self) -> None:
            self._native.close()

    class AsyncStream:
        def __init__(self, native: Any) -> None:
            self._native = native

        async def __aiter__(self) -> Any:
            while True:
                try:
                    piece = await _intercept.in_thread(self._native.next)
                except IronhostError as exc:
                    raise fail(exc, True) from None
                if piece is None:
                    return
                yield piece

        async def aclose(self) -> None:
            self._native.close()

    def route(request: Any) -> Tuple[Optional[_intercept.Route], str]:
        url = request.url
        target = url.target.decode("ascii", "replace")
        found = _intercept.lookup(
            url.scheme.decode("ascii"), url.host.decode("ascii"), url.port, target.split("?", 1)[0]
        )
        return found, target

    def headers_of(request: Any) -> List[Tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]

    def respond(answer: SupportsHttpReply, stream_cls: Any) -> Any:
        status = answer.status
        content: Any = bytes(answer.body or b"") if answer.stream is None else stream_cls(answer.stream)
        return module.Response(
            status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers],
            content=content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": _reason(status).encode("ascii")},
        )

    sync_original = sync_cls.handle_request
    async_original = async_cls.handle_async_request

    def handle_request(self: Any, request: Any) -> Any:
        found, target = route(request)
        if found is None:
            return sync_original(self, request)
        body = b"".join(request.stream)
        try:
            answer = found.send(request.method.decode("ascii"), target, headers_of(request), body)
        except IronhostError as exc:
            raise fail(exc, False) from None
        return respond(answer, Stream)

    async def handle_async_request(self: Any, request: Any) -> Any:
        found, target = route(request)
        if found is None:
            return await async_original(self, request)
        body = b"".join([piece async for piece in request.stream])
        try:
            answer = await found.asend(request.method.decode("ascii"), target, headers_of(request), body)
        except IronhostError as exc:
            raise fail(exc, False) from None
        return respond(answer, AsyncStream)

    sync_cls.handle_request = handle_request
    async_cls.handle_async_request = handle_async_request
    setattr(sync_cls, _PATCHED, True)


# -- aiohttp ------------------------------------------------------------------------------------


def _patch_aiohttp(aiohttp: Any) -> None:
    import asyncio

    from aiohttp import client_exceptions, client_proto
    from aiohttp import connector as connectors

    base = connectors.BaseConnector
    if getattr(base, _PATCHED, False):
        return
    original = base.connect
    read_timeout = getattr(client_exceptions, "SocketTimeoutError", client_exceptions.ServerTimeoutError)

    class VirtualTransport(asyncio.Transport):
        """The transport of a governed request: reads the request aiohttp writes, and feeds
        the host's answer to aiohttp's protocol as HTTP/1.1 bytes."""

        def __init__(self, protocol: Any, route: _intercept.Route, req: Any, loop: Any) -> None:
            super().__init__({"peername": (req.url.host, req.url.port)})
            self._protocol = protocol
            self._route = route
            self._key = req.connection_key
            self._loop = loop
            self._reader = _RequestReader(on_head=self._expect)
            self._closing = False
            self._resumed = asyncio.Event()
            self._resumed.set()
            self._task: Optional[asyncio.Task[None]] = None

        def _expect(self, headers: List[Tuple[str, str]]) -> None:
            if any(k.lower() == "expect" and v.lower() == "100-continue" for k, v in headers):
                self._deliver(b"HTTP/1.1 100 Continue\r\n\r\n")

        # What aiohttp writes.
        def write(self, data: Any) -> None:
            if self._closing:
                return
            for request in self._reader.feed(bytes(data)):
                if self._task is None:
                    self._task = self._loop.create_task(self._answer(request))

        def writelines(self, chunks: Any) -> None:
            self.write(b"".join(bytes(c) for c in chunks))

        def can_write_eof(self) -> bool:
            return False

        def write_eof(self) -> None:
            pass

        def get_write_buffer_size(self) -> int:
            return 0

        def get_write_buffer_limits(self) -> Tuple[int, int]:
            return (0, 0)

        def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
            pass

        # Flow control: the answer is fed while aiohttp reads.
        def pause_reading(self) -> None:
            self._resumed.clear()

        def resume_reading(self) -> None:
            self._resumed.set()

        def is_reading(self) -> bool:
            return self._resumed.is_set() and not self._closing

        def is_closing(self) -> bool:
            return self._closing

        def close(self) -> None:
            if self._closing:
                return
            self._closing = True
            self._resumed.set()
            task = self._task
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()  # the reader went away: stop reading the host's stream
            self._loop.call_soon(self._protocol.connection_lost, None)

        def abort(self) -> None:
            self.close()

        def get_protocol(self) -> Any:
            return self._protocol

        def set_protocol(self, protocol: Any) -> None:
            self._protocol = protocol

        def _deliver(self, data: bytes) -> None:
            if not self._closing:
                self._protocol.data_received(data)

        def _fail(self, exc: BaseException, started: bool) -> None:
            if self._closing:
                return
            payload = getattr(self._protocol, "_payload", None) if started else None
            (payload if payload is not None else self._protocol).set_exception(exc)

        async def _answer(self, request: _Request) -> None:
            try:
                answer = await self._route.asend(
                    request.method, request.target, request.headers, request.body
                )
            except IronhostError as exc:
                if isinstance(exc, _ProviderTimeout):
                    self._fail(read_timeout(f"Timeout on reading data from socket ({exc})"), False)
                elif isinstance(exc, _ProviderUnreachable):
                    refused = ConnectionRefusedError(
                        errno.ECONNREFUSED, f"the provider could not be reached ({exc})"
                    )
                    self._fail(client_exceptions.ClientConnectorError(self._key, refused), False)
                else:
                    self._fail(_intercept._passable(exc), False)
                return
            status, headers, stream = answer.status, list(answer.headers), answer.stream
            if stream is None:
                body = bytes(answer.body or b"")
                self._deliver(_head(status, headers, len(body), close=True) + body)
                return
            try:
                self._deliver(_head(status, headers, None, close=True))
                while True:
                    await self._resumed.wait()
                    if self._closing:
                        return
                    try:
                        piece = await _intercept.in_thread(stream.next)
                    except IronhostError as exc:
                        if isinstance(exc, _ProviderTimeout):
                            self._fail(read_timeout(f"Timeout on reading data from socket ({exc})"), True)
                        elif isinstance(exc, _ProviderUnreachable):
                            cut = f"Response payload is not completed: {exc}"
                            self._fail(client_exceptions.ClientPayloadError(cut), True)
                        else:
                            self._fail(_intercept._passable(exc), True)
                        return
                    if piece is None:
                        self._deliver(_LAST_CHUNK)
                        return
                    if piece:
                        self._deliver(_chunk(piece))
            finally:
                stream.close()

    async def connect(self: Any, req: Any, traces: Any, timeout: Any) -> Any:
        url = req.url
        route = _intercept.lookup(url.scheme, url.host or "", url.port, url.raw_path)
        if route is None:
            return await original(self, req, traces, timeout)
        if self.closed:
            raise client_exceptions.ClientConnectionError("Connector is closed.")
        protocol = client_proto.ResponseHandler(self._loop)
        protocol.connection_made(VirtualTransport(protocol, route, req, self._loop))
        return connectors.Connection(self, req.connection_key, protocol, self._loop)

    base.connect = connect
    setattr(base, _PATCHED, True)


# -- litellm ------------------------------------------------------------------------------------


def _patch_litellm(litellm: Any) -> None:
    # Not an HTTP client (it sends through httpx and aiohttp, hooked above), but it turns every
    # error of a call into its own: the denial is let through it (``_litellm``).
    from . import _litellm

    _litellm.install(litellm)


# -- Installing ---------------------------------------------------------------------------------

#: The libraries hooked, by the module whose import hooks them.
_HOOKS = (
    ("http.client", _patch_http_client),
    ("urllib3", _patch_urllib3),
    ("httpcore", _patch_httpcore),
    ("httpcore2", _patch_httpcore),
    ("aiohttp", _patch_aiohttp),
    ("litellm", _patch_litellm),
)
_INSTALLED: List[str] = []
_INSTALL_LOCK = threading.Lock()


def _installed(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def install() -> List[str]:
    """Hook every library this module knows that is installed (each now if it is imported,
    else when it is); returns their names."""
    with _INSTALL_LOCK:
        if not _INSTALLED:
            for name, hook in _HOOKS:
                if _installed(name):
                    when_imported(name, hook)
                    _INSTALLED.append(name)
        return list(_INSTALLED)
