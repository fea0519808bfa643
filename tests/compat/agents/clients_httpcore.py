"""httpcore and httpcore2 connection pools used directly (sync and async, plain and streamed),
and an httpx client whose transport of its own calls httpcore (so httpx's default transport is
not in the way)."""

import asyncio
import json

import httpcore
import httpcore2
import httpx

from _report import emit, run
from _wire import (
    ANTHROPIC_URL,
    OPENAI_URL,
    Events,
    anthropic_headers,
    anthropic_messages,
    answer_text,
    openai_chat,
    openai_headers,
)


def body(payload):
    return json.dumps(payload).encode()


class HttpcoreTransport(httpx.BaseTransport):
    """A transport of the application's own, straight on an httpcore pool."""

    def __init__(self):
        self._pool = httpcore.ConnectionPool()

    def handle_request(self, request):
        r = self._pool.request(
            request.method,
            str(request.url),
            headers=request.headers.raw,
            content=request.read(),
        )
        return httpx.Response(r.status, headers=r.headers, content=r.content)


def sync_cases(module, name):
    with module.ConnectionPool() as pool:
        r = pool.request("POST", OPENAI_URL, headers=openai_headers(), content=body(openai_chat()))
        emit(f"{name}_chat", answer_text(r.content), status=r.status)
        with pool.stream(
            "POST", ANTHROPIC_URL, headers=anthropic_headers(), content=body(anthropic_messages(stream=True))
        ) as r:
            events = Events()
            buffered = b""
            for piece in r.iter_stream():
                buffered += piece
                *lines, buffered = buffered.split(b"\n")
                events.lines(lines)
        emit(f"{name}_anthropic_stream", events.text(), **events.report())


async def async_cases(module, name):
    async with module.AsyncConnectionPool() as pool:
        r = await pool.request(
            "POST", ANTHROPIC_URL, headers=anthropic_headers(), content=body(anthropic_messages())
        )
        emit(f"{name}_async_anthropic", answer_text(r.content), status=r.status)
        async with pool.stream(
            "POST", OPENAI_URL, headers=openai_headers(), content=body(openai_chat(stream=True))
        ) as r:
            events = Events()
            buffered = b""
            async for piece in r.aiter_stream():
                buffered += piece
                *lines, buffered = buffered.split(b"\n")
                events.lines(lines)
        emit(f"{name}_async_chat_stream", events.text(), **events.report())


def main():
    sync_cases(httpcore, "httpcore")
    sync_cases(httpcore2, "httpcore2")
    asyncio.run(async_cases(httpcore, "httpcore"))
    asyncio.run(async_cases(httpcore2, "httpcore2"))
    with httpx.Client(transport=HttpcoreTransport()) as client:
        r = client.post(OPENAI_URL, json=openai_chat(), headers=openai_headers())
        emit("httpx_own_transport_chat", answer_text(r.json()), status=r.status_code)


if __name__ == "__main__":
    run(main)
