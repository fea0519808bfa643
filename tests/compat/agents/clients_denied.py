"""Run under a budget too small for any call: each library's call to a provider is refused
before it leaves, and the refusal reaches the code as ironhost's own exception (reported by its
class, module and code, since this script does not import ironhost). Requests to a server on
127.0.0.1 that the script starts itself go out unchanged, personal data and all."""

import asyncio
import http.server
import json
import threading
import urllib.request

import aiohttp
import httpcore
import litellm
import requests

from _report import emit, run
from _wire import OPENAI_URL, PII, openai_chat, openai_headers


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers `local <path>: <body>`."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        answer = f"local {self.path}: ".encode() + body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def causes(e):
    """The classes of the exceptions an exception was raised from (itself first)."""
    names = []
    while e is not None and len(names) < 10:
        names.append(type(e).__name__)
        e = e.__cause__ or e.__context__
    return names


def refused(case, call):
    try:
        call()
    except Exception as e:  # what the agent's code gets
        emit(
            case,
            type(e).__name__,
            module=type(e).__module__,
            bases=[c.__name__ for c in type(e).__mro__],
            code=getattr(e, "code", None),
            policy=getattr(e, "policy", None),
            causes=causes(e),
        )
    else:
        emit(case, "not refused")


def post_json(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read()


async def aiohttp_post(url, **kwargs):
    async with aiohttp.ClientSession() as session:
        async with session.post(url, **kwargs) as r:
            return await r.read()


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = f"http://127.0.0.1:{server.server_address[1]}"

    refused(
        "denied_requests",
        lambda: requests.post(OPENAI_URL, json=openai_chat(), headers=openai_headers()),
    )
    refused(
        "denied_requests_stream",
        lambda: requests.post(
            OPENAI_URL, json=openai_chat(stream=True), headers=openai_headers(), stream=True
        ),
    )
    refused("denied_urllib", lambda: post_json(OPENAI_URL, openai_chat(), openai_headers()))
    refused(
        "denied_aiohttp",
        lambda: asyncio.run(aiohttp_post(OPENAI_URL, json=openai_chat(), headers=openai_headers())),
    )
    refused(
        "denied_httpcore",
        lambda: httpcore.request(
            "POST", OPENAI_URL, headers=openai_headers(), content=json.dumps(openai_chat()).encode()
        ),
    )
    messages = [{"role": "user", "content": PII}]
    refused("denied_litellm", lambda: litellm.completion(model="openai/gpt-4o-mini", messages=messages))
    refused(
        "denied_litellm_async",
        lambda: asyncio.run(litellm.acompletion(model="openai/gpt-4o-mini", messages=messages)),
    )

    emit("local_requests", requests.post(local + "/requests", data=PII).text)
    with urllib.request.urlopen(urllib.request.Request(local + "/urllib", data=PII.encode())) as resp:
        emit("local_urllib", resp.read().decode())
    emit("local_aiohttp", asyncio.run(aiohttp_post(local + "/aiohttp", data=PII)).decode())
    r = httpcore.request("POST", local + "/httpcore", content=PII.encode())
    emit("local_httpcore", r.content.decode())
    server.shutdown()


if __name__ == "__main__":
    run(main)
