"""litellm, unchanged: completion (sync, on the openai SDK over httpx) and acompletion (async,
on litellm's aiohttp transport), plain and streamed, for an OpenAI and an Anthropic model."""

import asyncio

import litellm

from _report import emit, run
from _wire import PII

MESSAGES = [{"role": "user", "content": PII}]
OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-haiku-4-5"


def streamed(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def async_cases():
    r = await litellm.acompletion(model=OPENAI, messages=MESSAGES)
    emit("litellm_acompletion", r.choices[0].message.content, usage=r.usage.total_tokens)
    chunks = [c async for c in await litellm.acompletion(model=OPENAI, messages=MESSAGES, stream=True)]
    emit("litellm_acompletion_stream", streamed(chunks), chunks=len(chunks))
    r = await litellm.acompletion(model=ANTHROPIC, messages=MESSAGES, max_tokens=256)
    emit("litellm_acompletion_anthropic", r.choices[0].message.content)


def main():
    r = litellm.completion(model=OPENAI, messages=MESSAGES)
    emit("litellm_completion", r.choices[0].message.content, usage=r.usage.total_tokens)
    chunks = list(litellm.completion(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    emit("litellm_completion_stream", streamed(chunks), chunks=len(chunks))
    r = litellm.completion(model=ANTHROPIC, messages=MESSAGES, max_tokens=256)
    emit("litellm_completion_anthropic", r.choices[0].message.content)
    asyncio.run(async_cases())


if __name__ == "__main__":
    run(main)
