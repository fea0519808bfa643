"""openai-agents function tools, unchanged: the host governs each tool call the Runner makes.
A contact lookup whose answer names an email address (the model gets it redacted), a flaky
search that fails until its circuit opens (its `failure_error_function` shows the model what
went wrong, a refusal included), and an async tool run with `Runner.run`.

The simulator's reply rules (the test's config) answer each "oa <tool> <value>" prompt with a
call of that tool. Every case prints how many times each tool function ran."""

import asyncio

from agents import Agent, Runner, function_tool

from _report import emit, run

CALLS = {"lookup_contact": 0, "flaky_search": 0, "async_lookup": 0}


@function_tool
def lookup_contact(name: str) -> str:
    """Look a contact up in the CRM."""
    CALLS["lookup_contact"] += 1
    return f"{name} is owned by jane.doe@example.com"


def search_failed(ctx, error):
    return f"search failed: {error}"


@function_tool(failure_error_function=search_failed)
def flaky_search(query: str) -> str:
    """Search the web."""
    CALLS["flaky_search"] += 1
    if query != "acme":
        raise ConnectionError("search backend unreachable")
    return "acme: 120 employees"


@function_tool
async def async_lookup(name: str) -> str:
    """Look an account up."""
    CALLS["async_lookup"] += 1
    return f"{name}: account 42"


def outputs(result):
    return [item.output for item in result.new_items if item.type == "tool_call_output_item"]


def main():
    agent = Agent(name="Assistant", instructions="Use the tools.", model="gpt-4o-mini",
                  tools=[lookup_contact, flaky_search, async_lookup])

    def ask(case, prompt):
        result = Runner.run_sync(agent, prompt)
        out = outputs(result)
        emit(case, out[-1], tool_outputs=len(out), final=result.final_output, calls=dict(CALLS))

    ask("run_lookup", "oa lookup_contact Acme")
    ask("run_search_ok", "oa flaky_search acme")
    for i in range(1, 6):
        ask(f"run_search_failed_{i}", f"oa flaky_search q{i}")
    ask("run_search_fallback", "oa flaky_search acme")
    ask("run_search_refused", "oa flaky_search q6")

    result = asyncio.run(Runner.run(agent, "oa async_lookup Gamma"))
    emit("run_async", outputs(result)[-1], calls=dict(CALLS))


if __name__ == "__main__":
    run(main)
