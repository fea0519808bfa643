"""What the HTTP-client scripts send and read: the providers' JSON bodies and headers, and the
text of an answer (JSON, or server-sent events read line by line). Knows nothing of ironhost."""

import json
import os

PII = "Contact jane.doe@example.com, SSN 123-45-6789."
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"


def openai_headers():
    return {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}", "Content-Type": "application/json"}


def anthropic_headers():
    return {
        "x-api-key": os.environ["ANTHROPIC_API_KEY"],
        "anthropic-version": "2023-06-01",
        "Content-Type": "application/json",
    }


def openai_chat(stream=False):
    body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": PII}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def anthropic_messages(stream=False):
    body = {"model": ANTHROPIC_MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": PII}]}
    if stream:
        body["stream"] = True
    return body


def answer_text(payload):
    """The text of a JSON answer (chat completion or Anthropic message)."""
    if isinstance(payload, (bytes, str)):
        payload = json.loads(payload)
    if "choices" in payload:
        return payload["choices"][0]["message"]["content"]
    return "".join(b.get("text", "") for b in payload["content"] if b.get("type") == "text")


class Events:
    """Server-sent events read line by line: the text deltas of either provider's stream."""

    def __init__(self):
        self.parts = []
        self.events = 0
        self.done = False

    def line(self, line):
        if isinstance(line, (bytes, bytearray)):
            line = line.decode("utf-8")
        line = line.strip()
        if not line.startswith("data:"):
            return
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return
        event = json.loads(data)
        self.events += 1
        for choice in event.get("choices") or []:
            self.parts.append((choice.get("delta") or {}).get("content") or "")
        if event.get("type") == "content_block_delta" and event["delta"].get("type") == "text_delta":
            self.parts.append(event["delta"]["text"])
        if event.get("type") == "message_stop":
            self.done = True

    def lines(self, lines):
        for line in lines:
            self.line(line)
        return self

    def text(self):
        return "".join(self.parts)

    def report(self):
        return {"events": self.events, "done": self.done}
