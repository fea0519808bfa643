"""Deterministic test data: PII samples and provider responses in the providers' wire formats."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

#: The kinds ``pii_samples`` makes (the ones ``pii-redact`` finds by default, and the marker it
#: puts in their place).
MARKERS = {
    "email": "[EMAIL_REDACTED]",
    "phone": "[PHONE_REDACTED]",
    "ssn": "[SSN_REDACTED]",
    "credit_card": "[CREDIT_CARD_REDACTED]",
}

_FIRST = ["jane", "omar", "li", "sofia", "marcus", "aiko", "dana", "ravi"]
_LAST = ["doe", "haddad", "chen", "rossi", "webb", "tanaka", "whitfield", "iyer"]
_DOMAINS = ["example.org", "example.com", "mail.example.net", "corp.example"]
# Card numbers the card networks publish for testing (they pass the Luhn check).
_CARDS = ["4111 1111 1111 1111", "5555 5555 5555 4444", "3782 822463 10005", "6011 1111 1111 1117"]
_TEMPLATES = {
    "email": "Please send the contract to {value} by Friday.",
    "phone": "Call me on {value} after lunch.",
    "ssn": "My SSN is {value} for the background check.",
    "credit_card": "Charge the card {value} for the renewal.",
}


@dataclass(frozen=True)
class PiiSample:
    """One piece of personal data in a sentence: ``text`` contains ``value``, of ``kind``;
    ``redacted`` is ``text`` as ``pii-redact`` leaves it in redact mode."""

    kind: str
    value: str
    text: str

    @property
    def redacted(self) -> str:
        return self.text.replace(self.value, MARKERS[self.kind])


def _value(kind: str, rng: random.Random) -> str:
    if kind == "email":
        return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}@{rng.choice(_DOMAINS)}"
    if kind == "phone":
        # US numbers with valid area and exchange codes (no 0/1 first digit).
        return f"({rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}) {rng.randint(2, 9)}{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    if kind == "ssn":
        # Area 001-665 or 667-899 (never 000, 666 or 9xx), group and serial not zero.
        area = rng.choice([a for a in range(100, 900) if a != 666])
        return f"{area:03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
    if kind == "credit_card":
        return rng.choice(_CARDS)
    raise ValueError(f"pii_samples: unknown kind {kind!r} (one of {', '.join(MARKERS)})")


def pii_samples(kind: Optional[str] = None, count: int = 4, seed: int = 0) -> List[PiiSample]:
    """``count`` samples of ``kind`` (default: the kinds in turn), the same for the same seed."""
    if count < 0:
        raise ValueError(f"pii_samples: count must be >= 0, not {count}")
    kinds = [kind] if kind is not None else list(MARKERS)
    for k in kinds:
        if k not in MARKERS:
            raise ValueError(f"pii_samples: unknown kind {k!r} (one of {', '.join(MARKERS)})")
    rng = random.Random(seed)
    out = []
    for i in range(count):
        k = kinds[i % len(kinds)]
        value = _value(k, rng)
        out.append(PiiSample(k, value, _TEMPLATES[k].format(value=value)))
    return out


def _usage_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def openai_chat_response(
    text: str,
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 10,
    completion_tokens: Optional[int] = None,
    id: str = "chatcmpl-test",
) -> Dict[str, Any]:
    """A Chat Completions response body."""
    completion = _usage_tokens(text) if completion_tokens is None else completion_tokens
    return {
        "id": id,
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        },
    }


def _split(text: str, size: int = 12) -> List[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def openai_stream_events(
    text: str, model: str = "gpt-4o-mini", prompt_tokens: int = 10, id: str = "chatcmpl-test"
) -> bytes:
    """A streamed Chat Completions body (server-sent events), usage chunk included."""

    def chunk(delta: Dict[str, Any], finish: Optional[str]) -> Dict[str, Any]:
        return {
            "id": id,
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": piece}, None) for piece in _split(text)]
    events.append(chunk({}, "stop"))
    completion = _usage_tokens(text)
    usage = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        },
    }
    events.append(usage)
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return body.encode()


def anthropic_message_response(
    text: str,
    model: str = "claude-haiku-4-5",
    input_tokens: int = 10,
    output_tokens: Optional[int] = None,
    id: str = "msg_test",
) -> Dict[str, Any]:
    """A Messages API response body."""
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": _usage_tokens(text) if output_tokens is None else output_tokens,
        },
    }


def anthropic_stream_events(
    text: str, model: str = "claude-haiku-4-5", input_tokens: int = 10, id: str = "msg_test"
) -> bytes:
    """A streamed Messages body (server-sent events with event names)."""
    start = anthropic_message_response("", model, input_tokens, 0, id)
    start["content"] = []
    start["stop_reason"] = None
    events: List[tuple] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    for piece in _split(text):
        events.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": _usage_tokens(text)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()
