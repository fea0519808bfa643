"""pydantic-ai: agents on OpenAI (`openai:` is the Responses API, `openai-chat:` chat
completions) and on Anthropic, plain, streamed and with a structured output_type."""


from pydantic import BaseModel
from pydantic_ai import Agent

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


class Contact(BaseModel):
    note: str


def main():
    for name in ("openai:gpt-4o-mini", "openai-chat:gpt-4o-mini", "anthropic:claude-haiku-4-5"):
        provider = name.split(":")[0]
        agent = Agent(name, instructions="Be concise.")
        emit(f"{provider}.run_sync", agent.run_sync(PII).output, model=name)

        with agent.run_stream_sync(PII) as result:
            emit(f"{provider}.run_stream", "".join(result.stream_text(delta=True)), model=name)

        # Structured output is a forced call of a `final_result` tool; the prompt is itself a
        # Contact, so an echo is a valid call.
        structured = Agent(name, output_type=Contact)
        contact = structured.run_sync(Contact(note=PII).model_dump_json()).output
        emit(f"{provider}.output_type", contact.model_dump(), model=name)


if __name__ == "__main__":
    run(main)
