"""LangChain streaming (sync and async) under ironhost: answers are redacted in flight, chunk by
chunk, before the application sees them."""

import asyncio

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from ironhost.langchain import IronhostChain

prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
chain = IronhostChain(prompt | ChatOpenAI(model="gpt-4o-mini", streaming=True) | StrOutputParser(), name="stream")

if __name__ == "__main__":
    chunks = list(chain.stream({"q": "Who is the billing contact?"}))
    text = "".join(chunks)
    print(f"{len(chunks)} chunks: {text}")
    assert len(chunks) > 1 and text == "The billing contact is Omar Haddad, [PHONE_REDACTED]."

    async def main() -> str:
        return "".join([c async for c in chain.astream({"q": "Summarise the pipeline"})])

    summary = asyncio.run(main())
    print(f"async: {summary[:60]}")
    assert summary and chain.metrics()["llm_calls"] == 2
