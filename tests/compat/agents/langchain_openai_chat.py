"""langchain-openai: ChatOpenAI on chat completions and on the Responses API, streaming,
structured output, and OpenAIEmbeddings."""

import json
import sys
import traceback

from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


class Contact(BaseModel):
    note: str


def emit(case, text, **extra):
    print(json.dumps({"case": case, "text": text, **extra}), flush=True)


def main():
    llm = ChatOpenAI(model="gpt-4o-mini")

    emit("chat", llm.invoke(PII).text)
    emit("chat_stream", "".join(chunk.text for chunk in llm.stream(PII)))

    responses = ChatOpenAI(model="gpt-4o-mini", use_responses_api=True)
    emit("responses", responses.invoke(PII).text)
    emit("responses_stream", "".join(chunk.text for chunk in responses.stream(PII)))

    # The prompt is itself a Contact, so an echo is a valid answer.
    parsed = llm.with_structured_output(Contact).invoke(Contact(note=PII).model_dump_json())
    emit("structured", parsed.model_dump())

    embeddings = OpenAIEmbeddings(model="text-embedding-3-small")
    v = embeddings.embed_query(PII)
    emit("embed_query", {"length": len(v), "first": v[0]})
    vs = embeddings.embed_documents([PII, "Jane Doe works at Example Corp."])
    emit("embed_documents", [{"length": len(v), "first": v[0]} for v in vs])


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
