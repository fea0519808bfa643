"""langchain-openai: ChatOpenAI on chat completions and on the Responses API, streaming,
structured output, and OpenAIEmbeddings."""


from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


class Contact(BaseModel):
    note: str


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
    run(main)
