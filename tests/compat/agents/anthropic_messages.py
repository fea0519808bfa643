"""The anthropic SDK's messages (system blocks with cache_control, streaming, documents, tool
history), count_tokens and models endpoints."""


from anthropic import Anthropic

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."
MODEL = "claude-haiku-4-5"

SYSTEM = [
    {"type": "text", "text": "You are a CRM assistant.", "cache_control": {"type": "ephemeral"}},
]
LOOKUP = {
    "name": "lookup_contact",
    "description": "Look a contact up in the CRM.",
    "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
}


def text_of(message):
    return "".join(block.text for block in message.content if block.type == "text")


def main():
    client = Anthropic()

    m = client.messages.create(
        model=MODEL, max_tokens=256, system=SYSTEM, messages=[{"role": "user", "content": PII}]
    )
    emit("messages", text_of(m), stop_reason=m.stop_reason)

    with client.messages.stream(
        model=MODEL, max_tokens=256, system=SYSTEM, messages=[{"role": "user", "content": PII}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    emit("messages_stream", streamed, stop_reason=final.stop_reason, output_tokens=final.usage.output_tokens)

    m = client.messages.create(
        model=MODEL,
        max_tokens=256,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": PII},
                        "title": "CRM record",
                    },
                    {
                        "type": "document",
                        "source": {"type": "content", "content": [{"type": "text", "text": PII}]},
                        "context": "A second record.",
                    },
                    {"type": "text", "text": "Summarize the records."},
                ],
            }
        ],
    )
    emit("messages_documents", text_of(m))

    history = [
        {"role": "user", "content": "Who is Jane Doe?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look her up."},
                {"type": "tool_use", "id": "toolu_01", "name": "lookup_contact", "input": {"name": "Jane Doe"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": PII}],
        },
    ]
    m = client.messages.create(model=MODEL, max_tokens=256, tools=[LOOKUP], messages=history)
    emit("messages_tool_result", text_of(m))

    count = client.messages.count_tokens(model=MODEL, system=SYSTEM, tools=[LOOKUP], messages=history)
    emit("count_tokens", count.input_tokens)

    models = [m.id for m in client.models.list()]
    emit("models", models[:3], count=len(models))


if __name__ == "__main__":
    run(main)
