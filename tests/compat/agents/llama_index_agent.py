"""llama-index: the OpenAI LLM (complete, chat, stream_chat) and OpenAIEmbedding."""


from llama_index.core.llms import ChatMessage
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


def main():
    llm = OpenAI(model="gpt-4o-mini")
    emit("complete", llm.complete(PII).text)
    emit("chat", llm.chat([ChatMessage(role="user", content=PII)]).message.content)
    emit("stream_chat", "".join(r.delta or "" for r in llm.stream_chat([ChatMessage(role="user", content=PII)])))

    embed = OpenAIEmbedding(model="text-embedding-3-small")
    v = embed.get_text_embedding(PII)
    emit("text_embedding", {"length": len(v), "first": v[0]})
    vs = embed.get_text_embedding_batch([PII, "Jane Doe works at Example Corp."])
    emit("text_embedding_batch", [{"length": len(v), "first": v[0]} for v in vs])


if __name__ == "__main__":
    run(main)
