"""The openai SDK's chat completions, legacy completions, moderations and models endpoints."""


from openai import OpenAI
from pydantic import BaseModel

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."
MODEL = "gpt-4o-mini"


class Contact(BaseModel):
    note: str


LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup_contact",
        "description": "Look a contact up in the CRM.",
        "parameters": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
    },
}


def main():
    client = OpenAI()

    r = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": PII},
        ],
    )
    emit("chat", r.choices[0].message.content, finish_reason=r.choices[0].finish_reason)

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PII}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage.total_tokens
    emit("chat_stream", "".join(parts), total_tokens=usage)

    # A second turn after a tool call: the tool's result carries the PII.
    r = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Who is Jane Doe?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup_contact", "arguments": '{"name": "Jane Doe"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": PII},
        ],
        tools=[LOOKUP],
    )
    emit("chat_tools", r.choices[0].message.content)

    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PII}], tools=[LOOKUP], stream=True
    )
    emit("chat_tools_stream", "".join(c.choices[0].delta.content or "" for c in stream if c.choices))

    # Structured output: the prompt is itself a Contact, so an echo is a valid answer.
    r = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": Contact(note=PII).model_dump_json()}],
        response_format=Contact,
    )
    emit("chat_parse", r.choices[0].message.parsed.model_dump())

    r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PII, max_tokens=64)
    emit("completions", r.choices[0].text)

    r = client.moderations.create(model="omni-moderation-latest", input=PII)
    emit("moderations", r.results[0].flagged)

    models = [m.id for m in client.models.list()]
    emit("models", models[:3], count=len(models))


if __name__ == "__main__":
    run(main)
