"""Calls every kind of upstream the way real code does, unchanged: the default client, a
`base_url` client (an OpenRouter-style router), `OPENAI_BASE_URL` (a local OpenAI-compatible
server), `AzureOpenAI`, and the Anthropic SDK; then a model with no price. Each case prints a
JSON line; then the keys the agent can read.

The addresses come from the environment (`ROUTER_URL`, `LOCAL_URL`, `AZURE_URL`), as a real
agent's would; the keys are the ones the agent sees (placeholders under ironhost).
"""

import json
import os

import anthropic
import ironhost
import openai

PROMPT = "Write to jane.doe@example.com about the invoice"


def case(name, fn):
    try:
        text = fn()
        print(json.dumps({"case": name, "text": text}), flush=True)
    except ironhost.PolicyDenied as exc:
        print(json.dumps({"case": name, "denied": type(exc).__name__, "code": exc.code, "message": str(exc)}), flush=True)


def chat(client, model):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}]
    ).choices[0].message.content


case("default", lambda: chat(openai.OpenAI(max_retries=0), "gpt-4o-mini"))
router = openai.OpenAI(
    base_url=os.environ["ROUTER_URL"], api_key=os.environ["OPENROUTER_API_KEY"], max_retries=0
)
case("router", lambda: chat(router, "anthropic/claude-3.5-haiku"))
os.environ["OPENAI_BASE_URL"] = os.environ["LOCAL_URL"]
case("local", lambda: chat(openai.OpenAI(max_retries=0), "gpt-4o-mini"))
del os.environ["OPENAI_BASE_URL"]
azure = openai.AzureOpenAI(
    azure_endpoint=os.environ["AZURE_URL"],
    api_key=os.environ["AZURE_OPENAI_API_KEY"],
    api_version="2024-10-21",
    max_retries=0,
)
case("azure", lambda: chat(azure, "prod-4o"))
case(
    "anthropic",
    lambda: anthropic.Anthropic(max_retries=0)
    .messages.create(
        model="claude-3-5-haiku-latest", max_tokens=50, messages=[{"role": "user", "content": PROMPT}]
    )
    .content[0]
    .text,
)
case("unpriced", lambda: chat(router, "meta-llama/llama-3.1-8b-instruct"))

# What a bypass could carry: every variable the agent can read, and its process environment.
with open("/proc/self/environ", "rb") as f:
    raw = f.read().decode("utf-8", "replace")
print(json.dumps({"environ": dict(os.environ), "proc_environ": raw}), flush=True)
