"""`ironhost.langchain` with real langchain-core / langchain-openai objects on the simulator."""

from __future__ import annotations

import asyncio
from typing import List

import pytest
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tools import tool as lc_tool
from langchain_openai import ChatOpenAI

import ironhost
from ironhost.langchain import IronhostCallbackHandler, IronhostChain
from conftest import EMAIL

PROMPT = ChatPromptTemplate.from_messages(
    [("system", "You are a CRM assistant."), ("human", "{question}")]
)


def echo_chain():  # type: ignore[no-untyped-def]
    return PROMPT | ChatOpenAI(model="echo") | StrOutputParser()


def test_lcel_invoke_batch_and_metrics() -> None:
    chain = IronhostChain(echo_chain(), budget=1.0, name="crm")
    assert chain.invoke({"question": f"Write to {EMAIL}"}) == "Write to [EMAIL_REDACTED]"
    assert chain.batch([{"question": f"q{i}"} for i in range(3)]) == ["q0", "q1", "q2"]
    m = chain.metrics()
    assert m["name"] == "crm" and m["budget_usd"] == 1.0
    assert m["llm_calls"] == 4 and m["run"] == 4
    # The chain's input and output were shown to the policies as two tool steps per run.
    assert m["tool_calls"] == 8
    # One record per run; batch runs overlap in threads, so only the first run's own figures
    # are exactly its own.
    assert [r["status"] for r in chain.handler.runs] == ["ok"] * 4
    # The email was redacted at the input step, before the chain ran: the LLM call inside it
    # found nothing more.
    assert m["pii_findings"] == 1
    assert chain.handler.runs[0]["llm_calls"] == 1 and chain.handler.runs[0]["pii_findings"] == 0


def test_chain_output_without_an_llm_is_redacted() -> None:
    # No LLM call here: the PII comes from the chain's own code, and the output step catches it.
    lookup = RunnableLambda(lambda q: {"owner": f"Dana ({EMAIL})", "company": q["company"]})
    chain = IronhostChain(lookup)
    assert chain.invoke({"company": "Acme"}) == {"owner": "Dana ([EMAIL_REDACTED])", "company": "Acme"}
    assert chain.metrics()["pii_by_kind"] == {"email": 1}

    strict = IronhostChain(lookup, safety_mode="block")
    with pytest.raises(ironhost.PolicyDenied):
        strict.invoke({"company": "Acme"})


def test_streaming_sync_and_async() -> None:
    chain = IronhostChain(echo_chain())
    chunks = list(chain.stream({"question": f"Call {EMAIL} now"}))
    assert len(chunks) > 1 and "".join(chunks) == "Call [EMAIL_REDACTED] now"

    async def main() -> List[str]:
        out = [await chain.ainvoke({"question": "async one"})]
        out.append("".join([c async for c in chain.astream({"question": f"async {EMAIL}"})]))
        return out

    assert asyncio.run(main()) == ["async one", "async [EMAIL_REDACTED]"]
    m = chain.metrics()
    assert m["llm_calls"] == 3 and m["state"] == "completed"


def test_memory_keeps_the_redacted_conversation() -> None:
    histories = {}

    def history(session_id: str) -> InMemoryChatMessageHistory:
        return histories.setdefault(session_id, InMemoryChatMessageHistory())

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    with_memory = RunnableWithMessageHistory(
        prompt | ChatOpenAI(model="echo"),
        history,
        input_messages_key="question",
        history_messages_key="history",
    )
    chain = IronhostChain(with_memory)
    cfg = {"configurable": {"session_id": "s1"}}
    first = chain.invoke({"question": f"I am {EMAIL}"}, config=cfg)
    second = chain.invoke({"question": "What did I say?"}, config=cfg)
    assert first.content == "I am [EMAIL_REDACTED]" and second.content == "What did I say?"
    stored = [m.content for m in histories["s1"].messages]
    # The history holds what the policies let through: the email never entered the memory.
    assert stored == ["I am [EMAIL_REDACTED]", "I am [EMAIL_REDACTED]", "What did I say?", "What did I say?"]
    assert EMAIL not in repr(histories)


def test_tools_inside_a_chain_are_governed() -> None:
    @lc_tool
    @ironhost.tool("crm_lookup")
    def crm_lookup(company: str) -> str:
        """Find the account owner of a company."""
        return f"{company} is owned by the enterprise team"

    chain = IronhostChain(
        RunnableLambda(lambda x: {"question": crm_lookup.invoke({"company": x["company"]})})
        | echo_chain()
    )
    assert chain.invoke({"company": "Acme"}) == "Acme is owned by the enterprise team"
    m = chain.metrics()
    assert m["tool_calls"] == 3 and m["llm_calls"] == 1  # input, crm_lookup, output


def test_budget_stops_the_chain_and_the_handler_records_it() -> None:
    chain = IronhostChain(PROMPT | ChatOpenAI(model="gpt-4o", max_tokens=400) | StrOutputParser(), budget=0.02)
    with pytest.raises(ironhost.BudgetExceeded):
        for _ in range(200):
            chain.invoke({"question": "Analyse the pipeline " * 100})
    m = chain.metrics()
    assert 0 < m["cost_usd"] <= 0.02
    assert chain.handler.runs[-1]["status"] == "BudgetExceeded"
    assert all(r["status"] == "ok" for r in chain.handler.runs[:-1])


def test_the_handler_under_protect_agent() -> None:
    handler = IronhostCallbackHandler()
    chain = echo_chain()

    @ironhost.protect_agent
    def run() -> str:
        return chain.invoke({"question": f"mail {EMAIL}"}, config={"callbacks": [handler]})

    assert run() == "mail [EMAIL_REDACTED]"
    (only,) = handler.runs
    assert only["llm_calls"] == 1 and only["pii_findings"] == 1 and only["cost_usd"] >= 0
    with pytest.raises(TypeError, match="not a LangChain runnable"):
        IronhostChain(lambda x: x)  # type: ignore[arg-type]
