"""litellm answers that a policy refuses (run with `safety-mode = "block"` and a simulator reply
that gives an email address to a prompt without one): whole answers, and streams refused part
way, sync and async. The refusal reaches the code as ironhost's own exception, not litellm's."""

import asyncio

import litellm

from _report import refused, run

PROMPT = [{"role": "user", "content": "What is the contact address?"}]
OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-haiku-4-5"


def streamed(case, model, **kwargs):
    """The stream, sync then async; `chunks`: how many the code got before the refusal."""
    got = []

    def read():
        for chunk in litellm.completion(model=model, messages=PROMPT, stream=True, **kwargs):
            got.append(chunk)

    async def aread():
        async for chunk in await litellm.acompletion(model=model, messages=PROMPT, stream=True, **kwargs):
            got.append(chunk)

    refused(case, read, chunks=lambda: len(got))
    got.clear()
    refused(case + "_async", lambda: asyncio.run(aread()), chunks=lambda: len(got))


def main():
    refused("blocked_litellm", lambda: litellm.completion(model=OPENAI, messages=PROMPT))
    refused("blocked_litellm_async", lambda: asyncio.run(litellm.acompletion(model=OPENAI, messages=PROMPT)))
    streamed("blocked_litellm_stream", OPENAI)
    streamed("blocked_litellm_stream_anthropic", ANTHROPIC, max_tokens=256)


if __name__ == "__main__":
    run(main)
