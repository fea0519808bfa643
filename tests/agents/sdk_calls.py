"""Every SDK shape through the chain: prints one `label: text` line per call.

The `echo` model answers with the last user message exactly as the provider received it, so a
line shows what left the host. Other prompts containing "contact" are answered (by the simulator
reply rule the test configures) with text that holds an email address, so a line shows what
reached the agent.
"""

import asyncio

import anthropic
import openai

EMAIL = "jane.doe@example.org"
oa = openai.OpenAI()
an = anthropic.Anthropic()


def show(label, text):
    print(f"{label}: {text}", flush=True)


def user(text):
    return [{"role": "user", "content": text}]


# What leaves the host.
r = oa.chat.completions.create(model="echo", messages=user(f"Mail {EMAIL} today"))
show("openai-sync-out", r.choices[0].message.content)
chunks = oa.chat.completions.create(model="echo", messages=user(f"Mail {EMAIL} today"), stream=True)
show("openai-stream-out", "".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
m = an.messages.create(model="echo", max_tokens=100, messages=user(f"Mail {EMAIL} today"))
show("anthropic-sync-out", m.content[0].text)

# What comes back.
r = oa.chat.completions.create(model="gpt-4o-mini", messages=user("Who is our contact?"))
show("openai-sync-in", r.choices[0].message.content)
chunks = oa.chat.completions.create(
    model="gpt-4o-mini", messages=user("Who is our contact?"), stream=True,
    stream_options={"include_usage": True},
)
text, usage = "", None
for c in chunks:
    if c.choices:
        text += c.choices[0].delta.content or ""
    if c.usage:
        usage = c.usage
show("openai-stream-in", text)
show("openai-stream-usage", usage.completion_tokens if usage else None)
with an.messages.stream(model="claude-haiku-4-5", max_tokens=200, messages=user("Who is our contact?")) as s:
    show("anthropic-stream-in", "".join(s.text_stream))
m = an.messages.create(model="claude-haiku-4-5", max_tokens=200, messages=user("Who is our contact?"))
show("anthropic-sync-in", m.content[0].text)


async def main():
    aoa = openai.AsyncOpenAI()
    r = await aoa.chat.completions.create(model="echo", messages=user(f"Mail {EMAIL} today"))
    show("openai-async-out", r.choices[0].message.content)
    r = await aoa.chat.completions.create(model="gpt-4o-mini", messages=user("Who is our contact?"))
    show("openai-async-in", r.choices[0].message.content)
    s = await aoa.chat.completions.create(model="gpt-4o-mini", messages=user("Who is our contact?"), stream=True)
    text = ""
    async for c in s:
        if c.choices:
            text += c.choices[0].delta.content or ""
    show("openai-async-stream-in", text)
    aan = anthropic.AsyncAnthropic()
    m = await aan.messages.create(model="echo", max_tokens=100, messages=user(f"Mail {EMAIL} today"))
    show("anthropic-async-out", m.content[0].text)


asyncio.run(main())
