"""pydantic-ai tools (`@agent.tool_plain`, `@agent.tool`, `Tool(...)` async), unchanged: the host
governs each tool call an agent run makes. A contact lookup whose answer names an email address
(the model gets it redacted), a flaky search that raises until its circuit opens (the run fails
with the tool's own exception, as pydantic-ai does), and an async tool.

The simulator's reply rules (the test's config) answer each "pa <tool> <value>" prompt with a
call of that tool. Every case prints how many times each tool function ran."""

import asyncio

from pydantic_ai import Agent, RunContext, Tool
from pydantic_ai.messages import ToolReturnPart

from _report import emit, run

CALLS = {"lookup_contact": 0, "flaky_search": 0, "async_lookup": 0}


async def async_lookup(name: str) -> str:
    """Look an account up."""
    CALLS["async_lookup"] += 1
    return f"{name}: account 42"


agent = Agent("openai:gpt-4o-mini", instructions="Use the tools.", tools=[Tool(async_lookup)])


@agent.tool_plain
def lookup_contact(name: str) -> str:
    """Look a contact up in the CRM."""
    CALLS["lookup_contact"] += 1
    return f"{name} is owned by jane.doe@example.com"


@agent.tool
def flaky_search(ctx: RunContext[None], query: str) -> str:
    """Search the web."""
    CALLS["flaky_search"] += 1
    if query != "acme":
        raise ConnectionError("search backend unreachable")
    return "acme: 120 employees"


def returned(result):
    parts = [p for m in result.new_messages() for p in m.parts if isinstance(p, ToolReturnPart)]
    return parts[-1]


def main():
    def ask(case, prompt):
        try:
            part = returned(agent.run_sync(prompt))
        except ConnectionError as e:
            emit(case, str(e), raised=type(e).__name__, calls=dict(CALLS))
            return
        emit(case, part.content, tool=part.tool_name, outcome=part.outcome, calls=dict(CALLS))

    ask("run_lookup", "pa lookup_contact Acme")
    ask("run_search_ok", "pa flaky_search acme")
    for i in range(1, 6):
        ask(f"run_search_failed_{i}", f"pa flaky_search q{i}")
    ask("run_search_fallback", "pa flaky_search acme")
    ask("run_search_refused", "pa flaky_search q6")

    part = returned(asyncio.run(agent.run("pa async_lookup Gamma")))
    emit("run_async", part.content, tool=part.tool_name, outcome=part.outcome, calls=dict(CALLS))


if __name__ == "__main__":
    run(main)
