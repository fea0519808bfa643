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

from _report import emit, refused, run
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
    # litellm, sync (on the openai SDK) and async (on its aiohttp transport), plain and
    # streamed: the denial is raised as it is, and litellm's retries (`num_retries`, a Router's)
    # do not send the refused call again. litellm's own errors stay its own, even when raised
    # while the code handles a denial (which is then among their causes).
    messages = [{"role": "user", "content": PII}]
    model = "openai/gpt-4o-mini"
    deployments = [{"model_name": "gpt", "litellm_params": {"model": model}}]
    router = litellm.Router(model_list=deployments, num_retries=2)

    def completion(**kwargs):
        return litellm.completion(model=model, messages=messages, **kwargs)

    def acompletion(**kwargs):
        return asyncio.run(litellm.acompletion(model=model, messages=messages, **kwargs))

    async def astream():
        stream = await litellm.acompletion(model=model, messages=messages, stream=True)
        return [chunk async for chunk in stream]

    refused("denied_litellm", completion)
    refused("denied_litellm_stream", lambda: list(completion(stream=True)))
    refused("denied_litellm_retries", lambda: completion(num_retries=2))
    refused("denied_litellm_async", acompletion)
    refused("denied_litellm_async_stream", lambda: asyncio.run(astream()))
    refused("denied_litellm_async_retries", lambda: acompletion(num_retries=2))
    refused("denied_litellm_router", lambda: asyncio.run(router.acompletion(model="gpt", messages=messages)))

    def after_a_denial():
        try:
            completion()
        except Exception:  # while the denial is handled, a call litellm itself refuses
            litellm.completion(model="no-such-model", messages=messages)

    refused("litellm_after_denial", after_a_denial)

    emit("local_requests", requests.post(local + "/requests", data=PII).text)
    with urllib.request.urlopen(urllib.request.Request(local + "/urllib", data=PII.encode())) as resp:
        emit("local_urllib", resp.read().decode())
    emit("local_aiohttp", asyncio.run(aiohttp_post(local + "/aiohttp", data=PII)).decode())
    r = httpcore.request("POST", local + "/httpcore", content=PII.encode())
    emit("local_httpcore", r.content.decode())
    server.shutdown()


if __name__ == "__main__":
    run(main)
