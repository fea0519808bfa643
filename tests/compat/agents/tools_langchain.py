"""langchain-core tools and LangGraph's prebuilt ReAct agent, unchanged: the host governs each
tool call. A contact lookup whose answer names an email address (the agent's model gets it
redacted), a flaky search that fails until its circuit opens, and an async tool; driven by the
model through `create_react_agent` (its ToolNode turns tool errors into error messages), and
called directly with `invoke` / `ainvoke`.

The simulator's reply rules (the test's config) answer each "lg <tool> <value>" prompt with a
call of that tool. Every case prints how many times each tool function ran."""

import asyncio

from langchain_core.messages import ToolMessage
from langchain_core.tools import ToolException, tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import ToolNode, create_react_agent

from _report import emit, run

CALLS = {"lookup_contact": 0, "flaky_search": 0, "async_lookup": 0}


@tool
def lookup_contact(name: str) -> str:
    """Look a contact up in the CRM."""
    CALLS["lookup_contact"] += 1
    return f"{name} is owned by jane.doe@example.com"


@tool
def flaky_search(query: str) -> str:
    """Search the web."""
    CALLS["flaky_search"] += 1
    if query != "acme":
        raise ConnectionError("search backend unreachable")
    return "acme: 120 employees"


@tool
async def async_lookup(name: str) -> str:
    """Look an account up."""
    CALLS["async_lookup"] += 1
    return f"{name}: account 42"


def main():
    tools = ToolNode([lookup_contact, flaky_search], handle_tool_errors=True)
    agent = create_react_agent(ChatOpenAI(model="gpt-4o-mini"), tools)

    def ask(case, prompt):
        result = agent.invoke({"messages": [("user", prompt)]})
        messages = [m for m in result["messages"] if isinstance(m, ToolMessage)]
        last = messages[-1]
        emit(case, last.content, tool=last.name, status=last.status, tool_messages=len(messages),
             calls=dict(CALLS))

    ask("react_lookup", "lg lookup_contact Acme")
    # One good search, then five failures: the circuit opens.
    ask("react_search_ok", "lg flaky_search acme")
    for i in range(1, 6):
        ask(f"react_search_failed_{i}", f"lg flaky_search q{i}")
    # Open: the breaker answers with the last good result for the same arguments, and refuses
    # a search it has no result for; the search function does not run.
    ask("react_search_fallback", "lg flaky_search acme")
    ask("react_search_refused", "lg flaky_search q6")

    try:
        text = flaky_search.invoke({"query": "q7"})
        emit("invoke_refused", text, raised=None, calls=dict(CALLS))
    except ToolException as e:
        emit("invoke_refused", str(e), raised=type(e).__name__, tool_exception=True, calls=dict(CALLS))

    emit("invoke", lookup_contact.invoke({"name": "Beta"}), calls=dict(CALLS))
    emit("ainvoke", asyncio.run(async_lookup.ainvoke({"name": "Gamma"})), calls=dict(CALLS))


if __name__ == "__main__":
    run(main)
