"""An agent script: three calls through the official SDKs, then its progress."""

import anthropic
import openai

import ironhost

oa = openai.OpenAI()
for i in range(2):
    oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"Lead {i}"}])
anthropic.Anthropic().messages.create(
    model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "Summarise"}]
)
ironhost.progress(3, 3, "calls")
