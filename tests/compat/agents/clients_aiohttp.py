"""aiohttp's ClientSession, unchanged: chat completions plain and streamed (the response's
content read line by line), Anthropic messages plain and streamed (iter_chunked), and calls
made concurrently."""

import asyncio

import aiohttp

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


async def cases():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.post(OPENAI_URL, json=openai_chat(), headers=openai_headers()) as r:
            r.raise_for_status()
            emit("aiohttp_chat", answer_text(await r.json()), status=r.status)

        async with session.post(OPENAI_URL, json=openai_chat(stream=True), headers=openai_headers()) as r:
            events = Events()
            async for line in r.content:
                events.line(line)
        emit("aiohttp_chat_stream", events.text(), **events.report())

        async with session.post(ANTHROPIC_URL, json=anthropic_messages(), headers=anthropic_headers()) as r:
            emit("aiohttp_anthropic", answer_text(await r.read()), status=r.status)

        async with session.post(
            ANTHROPIC_URL, json=anthropic_messages(stream=True), headers=anthropic_headers()
        ) as r:
            events = Events()
            buffered = b""
            async for piece in r.content.iter_chunked(64):
                buffered += piece
                *lines, buffered = buffered.split(b"\n")
                events.lines(lines)
        emit("aiohttp_anthropic_stream", events.text(), **events.report())

        async def one():
            async with session.post(OPENAI_URL, json=openai_chat(), headers=openai_headers()) as r:
                return answer_text(await r.json())

        texts = await asyncio.gather(*(one() for _ in range(3)))
        emit("aiohttp_concurrent", texts[0], all_same=len(set(texts)) == 1, count=len(texts))


def main():
    asyncio.run(cases())


if __name__ == "__main__":
    run(main)
