"""The openai SDK's Responses API: plain, streamed (raw events and the stream helper), function
tools with a second turn on previous_response_id, and retrieve."""

import json

from openai import OpenAI

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."
MODEL = "gpt-4o-mini"

LOOKUP = {
    "type": "function",
    "name": "lookup_contact",
    "description": "Look a contact up in the CRM.",
    "parameters": {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    },
    "strict": True,
}


def main():
    client = OpenAI()

    r = client.responses.create(model=MODEL, instructions="Be brief.", input=PII)
    emit("responses", r.output_text, status=r.status, usage=r.usage.total_tokens if r.usage else None)

    events, parts = [], []
    for event in client.responses.create(model=MODEL, input=[{"role": "user", "content": PII}], stream=True):
        events.append(event.type)
        if event.type == "response.output_text.delta":
            parts.append(event.delta)
    emit("responses_stream", "".join(parts), first=events[0], last=events[-1])

    with client.responses.stream(model=MODEL, input=PII) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    emit("responses_stream_helper", final.output_text, status=final.status)

    # Turn one forces the tool; the prompt is the tool's arguments, so an echo is a valid call.
    first = client.responses.create(
        model=MODEL,
        input=json.dumps({"name": "Jane Doe"}),
        tools=[LOOKUP],
        tool_choice={"type": "function", "name": "lookup_contact"},
    )
    calls = [item for item in first.output if item.type == "function_call"]
    if not calls:
        raise RuntimeError(f"expected a function_call, got {[item.type for item in first.output]}")
    emit("responses_tool_call", calls[0].name, arguments=json.loads(calls[0].arguments))
    # Turn two: the tool's output (with the PII) on previous_response_id.
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": PII}],
        tools=[LOOKUP],
    )
    emit("responses_tool_result", second.output_text)

    again = client.responses.retrieve(second.id)
    emit("responses_retrieve", again.output_text, same_id=again.id == second.id)


if __name__ == "__main__":
    run(main)
