"""langchain-anthropic: ChatAnthropic plain and streamed, structured output, and bound tools
with a tool result in the history."""


from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


class Contact(BaseModel):
    note: str


@tool
def lookup_contact(name: str) -> str:
    """Look a contact up in the CRM."""
    return PII


def main():
    llm = ChatAnthropic(model="claude-haiku-4-5")

    emit("chat", llm.invoke(PII).text)
    emit("chat_stream", "".join(chunk.text for chunk in llm.stream(PII)))

    # Structured output forces a call of a `Contact` tool; the prompt is itself a Contact.
    parsed = llm.with_structured_output(Contact).invoke(Contact(note=PII).model_dump_json())
    if parsed is None:
        raise RuntimeError("with_structured_output returned no Contact (no tool_use in the answer)")
    emit("structured", parsed.model_dump())

    with_tools = llm.bind_tools([lookup_contact])
    history = [
        HumanMessage("Who is Jane Doe?"),
        AIMessage(
            "",
            tool_calls=[{"id": "toolu_01", "name": "lookup_contact", "args": {"name": "Jane Doe"}}],
        ),
        ToolMessage(lookup_contact.invoke({"name": "Jane Doe"}), tool_call_id="toolu_01"),
    ]
    answer = with_tools.invoke(history)
    emit("tools", answer.text, tool_calls=[c["name"] for c in answer.tool_calls])


if __name__ == "__main__":
    run(main)
