"""Routes agents' HTTP calls to governed upstreams through ironhost.

An *upstream* is a provider endpoint the host governs: the built-in ``openai``
(``https://api.openai.com``) and ``anthropic`` (``https://api.anthropic.com``), and the
``[[llm.upstreams]]`` of the host's config (an OpenRouter, Azure or local OpenAI-compatible
server), each a name and a base URL. A request whose URL starts with an upstream's base URL
(scheme, host, port, then the base path at a segment boundary; the longest base wins) goes to
the host as bytes, with no socket, named by its upstream: the host sends it on to that upstream
with that upstream's key. Requests to any other URL, and requests made outside any agent (see
``_context``), go out unchanged.

The HTTP libraries are hooked where they hand a request to the network: ``httpx``/``httpx2``
transports here, the others in ``_clients``. Every hook asks :func:`lookup` and sends through
the :class:`Route` it gets.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple
from urllib.parse import urlsplit

from . import _context
from ._target import Headers, SupportsHttpReply, Target
from .errors import IronhostError, _ProviderTimeout, _ProviderUnreachable


class Upstream(NamedTuple):
    """Where an upstream's requests are addressed."""

    name: str
    scheme: str
    host: str
    port: int
    #: The base URL's path without its trailing ``/`` (``""`` for the host's root).
    prefix: str


_DEFAULT_PORTS = {"http": 80, "https": 443}


def upstream(name: str, base_url: str) -> Upstream:
    """The address of an upstream from its base URL."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"upstream `{name}`: `{base_url}` is not an http(s) URL")
    port = parts.port or _DEFAULT_PORTS[scheme]
    return Upstream(name, scheme, parts.hostname.lower(), port, parts.path.rstrip("/"))


#: The built-in upstreams; under ``ironhost start`` the host's whole table replaces them.
BUILT_IN = (
    upstream("openai", "https://api.openai.com"),
    upstream("anthropic", "https://api.anthropic.com"),
)
#: The process-wide table: the host's under ``ironhost start`` (``_runner.prepare`` sets it), and
#: the table of targets with none of their own (the testing kit's, test doubles). An SDK agent
#: has its own (``Agent.upstreams``), which governs only its calls.
UPSTREAMS: List[Upstream] = list(BUILT_IN)
#: Every host some table names: requests to other hosts skip the look-up of the agent.
_HOSTS: Set[str] = {u.host for u in BUILT_IN}


def _table(target: Target) -> Iterable[Upstream]:
    own = getattr(target, "upstreams", None)
    if own is None or _context.is_hosted(target):
        # The mock or a test double, or the host's agent (whose table is the process's):
        # the process-wide table.
        return UPSTREAMS
    cached = _AGENT_TABLES.get(id(target))
    if cached is None or cached[0] is not target:
        cached = (target, [upstream(n, u) for n, u in own])
        _AGENT_TABLES[id(target)] = cached
    return cached[1]


_AGENT_TABLES: Dict[int, Tuple[Target, List[Upstream]]] = {}


def match(table: Iterable[Upstream], scheme: str, host: str, port: Optional[int], path: str) -> Optional[str]:
    """The name of the upstream of ``table`` that a request to this URL is addressed to."""
    scheme = scheme.lower()
    host = host.lower()
    port = port or _DEFAULT_PORTS.get(scheme, 0)
    path = path.split("?", 1)[0]
    best: Optional[Upstream] = None
    for u in table:
        if u.host != host or u.port != port or u.scheme != scheme:
            continue
        if u.prefix and not (path == u.prefix or path.startswith(u.prefix + "/")):
            continue
        if best is None or len(u.prefix) > len(best.prefix):
            best = u
    return None if best is None else best.name


class Route:
    """Where a governed request goes: the agent it belongs to, and the upstream it was
    addressed to."""

    __slots__ = ("agent", "upstream")

    def __init__(self, agent: Target, upstream_name: str) -> None:
        self.agent = agent
        self.upstream = upstream_name

    def send(self, method: str, path: str, headers: Headers, body: bytes) -> SupportsHttpReply:
        """Send the request through the chain; returns the answer: its ``status``, ``headers``
        and either ``body`` (bytes) or ``stream`` (``next()`` gives the next bytes, None at the
        end; ``close()``). Raises ``IronhostError`` (a policy's refusal, or
        ``_ProviderTimeout`` / ``_ProviderUnreachable`` for the library's own timeout and
        connection errors)."""
        return self.agent.handle_http(self.upstream, method, path, headers, body)

    async def asend(self, method: str, path: str, headers: Headers, body: bytes) -> SupportsHttpReply:
        """:meth:`send` from a coroutine, the event loop free while the host works."""
        return await in_thread(self.agent.handle_http, self.upstream, method, path, headers, body)


def lookup(scheme: str, host: str, port: Optional[int], path: str) -> Optional[Route]:
    """The route of a request to this URL, or None to send it out unchanged (not an upstream's
    URL, or no agent is active)."""
    if host.lower() not in _HOSTS:
        return None
    target = _context.target()
    if target is None:
        return None
    name = match(_table(target), scheme, host, port, path)
    return None if name is None else Route(target, name)


def set_upstreams(table: Iterable[Tuple[str, str]]) -> None:
    """The host's table (name, base URL) replaces the process-wide one."""
    UPSTREAMS[:] = [upstream(n, u) for n, u in table]
    _HOSTS.update(u.host for u in UPSTREAMS)


def add_agent_hosts(table: Iterable[Tuple[str, str]]) -> None:
    """An SDK agent's table: its hosts are looked up (for that agent's calls only)."""
    _HOSTS.update(upstream(n, u).host for n, u in table)


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


def _headers(request: Any) -> List[Tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]


def _path(request: Any) -> str:
    return request.url.raw_path.decode("ascii", "replace")


async def in_thread(fn: Any, *args: Any) -> Any:
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
                    chunk = await in_thread(self._native.next)
                except IronhostError as exc:
                    raise fail(exc, self._request) from None
                if chunk is None:
                    return
                yield chunk

        async def aclose(self) -> None:
            self._native.close()

    def respond(request: Any, answer: SupportsHttpReply, stream_cls: Any) -> Any:
        headers = list(answer.headers)
        if answer.stream is None:
            body = bytes(answer.body or b"")
            return module.Response(answer.status, headers=headers, content=body, request=request)
        return module.Response(
            answer.status, headers=headers, stream=stream_cls(answer.stream, request), request=request
        )

    sync_original = transports[0].handle_request
    async_original = transports[1].handle_async_request

    def route(request: Any) -> Optional[Route]:
        url = request.url
        return lookup(url.scheme, url.host, url.port, url.path)

    def handle_request(self: Any, request: Any) -> Any:
        found = route(request)
        if found is None:
            return sync_original(self, request)
        body = request.read()
        try:
            answer = found.send(request.method, _path(request), _headers(request), body)
        except IronhostError as exc:
            raise fail(exc, request) from None
        return respond(request, answer, NativeStream)

    async def handle_async_request(self: Any, request: Any) -> Any:
        found = route(request)
        if found is None:
            return await async_original(self, request)
        body = await request.aread()
        try:
            answer = await found.asend(request.method, _path(request), _headers(request), body)
        except IronhostError as exc:
            raise fail(exc, request) from None
        return respond(request, answer, AsyncNativeStream)

    transports[0].handle_request = handle_request
    transports[1].handle_async_request = handle_async_request
    setattr(transports[0], _PATCHED, True)


def install() -> List[str]:
    """Hook every installed HTTP library; returns the names of the ones hooked."""
    hooked = []
    for name in ("httpx2", "httpx"):
        if importlib.util.find_spec(name) is None:
            continue
        _patch(importlib.import_module(name))
        hooked.append(name)
    # The other libraries (requests/urllib3, http.client, httpcore, aiohttp): hooked as they
    # are imported.
    from . import _clients

    hooked.extend(_clients.install())
    return hooked
