"""`ironhost._clients`: the hooks on HTTP libraries other than httpx (http.client and
urllib.request, urllib3 and requests, httpcore and httpcore2, aiohttp), against a scripted
agent: what each library hands the host, streams as the host releases them, each library's own
errors, and requests that are not governed going out unchanged. Every library is in
requirements-test.txt: one missing fails its tests (tests/compat/ also runs them all under
`ironhost start`)."""

from __future__ import annotations

import asyncio
import importlib
import http.server
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any, Iterator, List, Optional, Tuple

import pytest

import ironhost
from ironhost import _clients, _context, _intercept
from ironhost._target import HttpReply
from ironhost.errors import _ProviderTimeout, _ProviderUnreachable

_clients.install()

URL = "https://api.openai.com/v1/chat/completions"
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-test"}
ANSWER = json.dumps({"choices": [{"message": {"content": "hello"}}]}).encode()
EVENTS = [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n', b"data: [DONE]\n\n"]


class GatedStream:
    """A native stream whose later pieces wait until the reader has seen the one before: a
    client that buffers the stream would make them wait in vain (``late``)."""

    def __init__(self, pieces: List[bytes], fail: Optional[BaseException] = None) -> None:
        self.pieces = list(pieces)
        self.fail = fail
        self.seen = [threading.Event() for _ in pieces]
        self.late = False
        self.closed = False
        self._i = 0

    def next(self) -> Optional[bytes]:
        if self._i and not self.seen[self._i - 1].wait(5):
            self.late = True
        if self._i == len(self.pieces):
            if self.fail is not None:
                raise self.fail
            return None
        self._i += 1
        return self.pieces[self._i - 1]

    def saw(self, text: bytes) -> None:
        for i, piece in enumerate(self.pieces):
            if piece.strip() and piece.strip() in text:
                self.seen[i].set()

    def close(self) -> None:
        self.closed = True


class Agent:
    """A target that answers every request with ``answer`` (or raises ``error``)."""

    def __init__(self, answer: Optional[HttpReply] = None, error: Optional[BaseException] = None) -> None:
        self.answer = answer if answer is not None else HttpReply(200, [("content-type", "application/json")], body=ANSWER)
        self.error = error
        self.requests: List[Tuple[str, str, str, dict, bytes]] = []

    def handle_http(self, upstream: str, method: str, path: str, headers: Any, body: bytes) -> HttpReply:
        self.requests.append((upstream, method, path, {k.lower(): v for k, v in headers}, body))
        if self.error is not None:
            raise self.error
        return self.answer


def stream_answer(stream: GatedStream) -> HttpReply:
    return HttpReply(200, [("content-type", "text/event-stream")], stream=stream)


# -- Each library: one plain call, one streamed call ----------------------------------------------


def call_urllib(stream: Optional[GatedStream]) -> bytes:
    req = urllib.request.Request(URL, data=BODY, headers=HEADERS)
    with urllib.request.urlopen(req) as resp:
        if stream is None:
            return resp.read()
        out = b""
        for line in resp:
            out += line
            stream.saw(out)
        return out


def call_http_client(stream: Optional[GatedStream]) -> bytes:
    import http.client

    conn = http.client.HTTPSConnection("api.openai.com")
    try:
        conn.request("POST", "/v1/chat/completions", BODY, HEADERS)
        resp = conn.getresponse()
        out = b""
        while True:
            line = resp.readline()
            if not line:
                return out
            out += line
            if stream is not None:
                stream.saw(out)
    finally:
        conn.close()


def call_requests(stream: Optional[GatedStream]) -> bytes:
    requests = importlib.import_module("requests")
    if stream is None:
        return requests.post(URL, data=BODY, headers=HEADERS).content
    out = b""
    with requests.post(URL, data=BODY, headers=HEADERS, stream=True) as r:
        for line in r.iter_lines():
            out += line + b"\n"
            stream.saw(out)
    return out


def call_urllib3(stream: Optional[GatedStream]) -> bytes:
    urllib3 = importlib.import_module("urllib3")
    pool = urllib3.PoolManager()
    r = pool.request("POST", URL, body=BODY, headers=HEADERS, preload_content=stream is None)
    if stream is None:
        return r.data
    out = b""
    for piece in r.stream(1024):
        out += piece
        stream.saw(out)
    r.release_conn()
    return out


def _httpcore(name: str, stream: Optional[GatedStream]) -> bytes:
    module = importlib.import_module(name)
    with module.ConnectionPool() as pool:
        with pool.stream("POST", URL, headers=HEADERS, content=BODY) as r:
            out = b""
            for piece in r.iter_stream():
                out += piece
                if stream is not None:
                    stream.saw(out)
            return out


def call_httpcore(stream: Optional[GatedStream]) -> bytes:
    return _httpcore("httpcore", stream)


def call_httpcore2(stream: Optional[GatedStream]) -> bytes:
    return _httpcore("httpcore2", stream)


def _async_httpcore(name: str, stream: Optional[GatedStream]) -> bytes:
    module = importlib.import_module(name)

    async def main() -> bytes:
        async with module.AsyncConnectionPool() as pool:
            async with pool.stream("POST", URL, headers=HEADERS, content=BODY) as r:
                out = b""
                async for piece in r.aiter_stream():
                    out += piece
                    if stream is not None:
                        stream.saw(out)
                return out

    return asyncio.run(main())


def call_async_httpcore(stream: Optional[GatedStream]) -> bytes:
    return _async_httpcore("httpcore", stream)


def call_async_httpcore2(stream: Optional[GatedStream]) -> bytes:
    return _async_httpcore("httpcore2", stream)


def call_aiohttp(stream: Optional[GatedStream]) -> bytes:
    aiohttp = importlib.import_module("aiohttp")

    async def main() -> bytes:
        async with aiohttp.ClientSession() as session:
            async with session.post(URL, data=BODY, headers=HEADERS) as r:
                if stream is None:
                    return await r.read()
                out = b""
                async for line in r.content:
                    out += line
                    stream.saw(out)
                return out

    return asyncio.run(main())


CALLS = [
    call_urllib,
    call_http_client,
    call_requests,
    call_urllib3,
    call_httpcore,
    call_httpcore2,
    call_async_httpcore,
    call_async_httpcore2,
    call_aiohttp,
]


@pytest.fixture
def agent() -> Iterator[Agent]:
    a = Agent()
    with _context.active(a):
        yield a


@pytest.mark.parametrize("call", CALLS, ids=lambda f: f.__name__[5:])
def test_a_governed_request_goes_to_the_host_whole(call: Any, agent: Agent) -> None:
    assert call(None) == ANSWER
    ((upstream, method, path, headers, body),) = agent.requests
    assert (upstream, method, path, body) == ("openai", "POST", "/v1/chat/completions", BODY)
    assert headers["authorization"] == "Bearer sk-test"
    assert "transfer-encoding" not in headers


@pytest.mark.parametrize("call", CALLS, ids=lambda f: f.__name__[5:])
def test_a_stream_arrives_as_the_host_releases_it(call: Any, agent: Agent) -> None:
    stream = GatedStream(EVENTS)
    agent.answer = stream_answer(stream)
    out = call(stream)
    assert b'data: {"n": 1}' in out and b"data: [DONE]" in out
    assert not stream.late, "the client waited for the whole stream"
    assert stream.closed


# -- Errors: each library's own, and a denial unchanged --------------------------------------------


def expected_errors(name: str) -> Tuple[Any, Any]:
    """The (timeout, connection) errors a library raises for the host's."""
    if name in ("urllib",):
        return urllib.error.URLError, urllib.error.URLError
    if name == "http_client":
        return TimeoutError, ConnectionRefusedError
    if name == "requests":
        import requests

        return requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError
    if name == "urllib3":
        import urllib3

        return urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.MaxRetryError
    if name.endswith("httpcore") or name.endswith("httpcore2"):
        module = __import__(name.replace("async_", ""))
        return module.ReadTimeout, module.ConnectError
    import aiohttp

    return aiohttp.ServerTimeoutError, aiohttp.ClientConnectorError


@pytest.mark.parametrize("call", CALLS, ids=lambda f: f.__name__[5:])
def test_errors_are_the_library_own_and_denials_pass_unchanged(call: Any, agent: Agent) -> None:
    name = call.__name__[5:]
    timeout, unreachable = expected_errors(name)
    agent.error = _ProviderTimeout("the provider did not answer in 30 s")
    with pytest.raises(timeout):
        call(None)
    agent.error = _ProviderUnreachable("connection refused")
    with pytest.raises(unreachable):
        call(None)
    agent.error = ironhost.BudgetExceeded("budget of $0.01 reached", code="budget_exceeded", policy="budget")
    with pytest.raises(ironhost.BudgetExceeded) as caught:
        call(None)
    assert caught.value.code == "budget_exceeded" and caught.value.policy == "budget"


@pytest.mark.parametrize("call", CALLS, ids=lambda f: f.__name__[5:])
def test_a_denial_in_a_stream_passes_unchanged(call: Any, agent: Agent) -> None:
    denial = ironhost.PolicyDenied("an SSN in the answer", code="pii_detected", policy="pii-redact")
    stream = GatedStream(EVENTS[:1], fail=denial)
    agent.answer = stream_answer(stream)
    with pytest.raises(ironhost.PolicyDenied) as caught:
        call(stream)
    assert caught.value.code == "pii_detected"


# -- What is not governed goes out unchanged -------------------------------------------------------


class _Local(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: List[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.seen.append(self.path)
        answer = b"local:" + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def local() -> Iterator[str]:
    """A local server, whose `/gov` is an upstream's base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Local)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    saved, hosts = list(_intercept.UPSTREAMS), set(_intercept._HOSTS)
    _intercept.set_upstreams([(u.name, f"{u.scheme}://{u.host}") for u in saved] + [("local", base + "/gov")])
    _Local.seen = []
    try:
        yield base
    finally:
        _intercept.UPSTREAMS[:] = saved
        _intercept._HOSTS.intersection_update(hosts)
        server.shutdown()
        server.server_close()


def test_only_an_upstream_base_url_is_governed_on_a_shared_connection(local: str, agent: Agent) -> None:
    import http.client

    port = int(local.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port)
    answers = []
    for path in ("/other", "/gov/v1/chat/completions", "/other?again=1"):
        conn.request("POST", path, b"x", {"Content-Type": "text/plain"})
        answers.append(conn.getresponse().read())
    conn.close()
    assert answers == [b"local:x", ANSWER, b"local:x"]
    assert _Local.seen == ["/other", "/other?again=1"]
    assert [(r[0], r[2]) for r in agent.requests] == [("local", "/gov/v1/chat/completions")]


def test_requests_to_other_hosts_and_outside_agents_go_out_unchanged(local: str) -> None:
    agent = Agent()
    with _context.active(agent):
        with urllib.request.urlopen(urllib.request.Request(local + "/plain", data=b"a")) as r:
            assert r.read() == b"local:a"
        if _has("requests"):
            import requests

            assert requests.post(local + "/plain", data=b"b").content == b"local:b"
        if _has("aiohttp"):
            import aiohttp

            async def main() -> bytes:
                async with aiohttp.ClientSession() as s:
                    async with s.post(local + "/plain", data=b"c") as r:
                        return await r.read()

            assert asyncio.run(main()) == b"local:c"
    # Outside any agent, even an upstream's URL is not governed.
    with urllib.request.urlopen(urllib.request.Request(local + "/gov/v1/x", data=b"d")) as r:
        assert r.read() == b"local:d"
    assert agent.requests == []
    assert "/gov/v1/x" in _Local.seen


def _has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -- Hooked when imported, not before ----------------------------------------------------------------


def test_libraries_are_hooked_when_imported_and_not_imported_before() -> None:
    code = """
import sys
from ironhost import _clients
names = _clients.install()
print(sorted(n for n in ("urllib3", "aiohttp", "httpcore", "httpcore2", "requests") if n in sys.modules))
import importlib
for name, cls in (("urllib3.connectionpool", "HTTPConnectionPool"),
                  ("aiohttp.connector", "BaseConnector"),
                  ("httpcore", "ConnectionPool"),
                  ("httpcore2", "ConnectionPool"),
                  ("http.client", "HTTPConnection")):
    try:
        module = importlib.import_module(name)
    except ImportError:
        continue
    print(name, any(k.startswith("__ironhost") for k in vars(getattr(module, cls))))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
    ).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1:] and all(line.endswith(" True") for line in out[1:]), out


def test_when_imported_runs_after_the_module_ran_or_at_once(tmp_path: Any) -> None:
    (tmp_path / "later_mod.py").write_text("VALUE = 1\n")
    code = """
import sys
from ironhost._clients import when_imported
seen = []
when_imported("later_mod", lambda m: seen.append(("later", m.VALUE)))
when_imported("sys", lambda m: seen.append(("sys", m.__name__)))
print(seen)
import later_mod
print(seen, type(later_mod.__loader__).__name__)
"""
    env = _env()
    env["PYTHONPATH"] = f"{tmp_path}:{env.get('PYTHONPATH', '')}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    lines = out.stdout.splitlines()
    assert lines[0] == "[('sys', 'sys')]"
    assert lines[1] == "[('sys', 'sys'), ('later', 1)] SourceFileLoader"


def _env() -> dict:
    import os
    from pathlib import Path

    env = dict(os.environ)
    package = str(Path(ironhost.__file__).resolve().parents[1])
    env["PYTHONPATH"] = package + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
