"""The SDK's entry points inside `ironhost start`: they run under the host's agent."""

import asyncio

import openai

import ironhost


@ironhost.protect_agent(budget=1.0)
def ask() -> str:
    r = openai.OpenAI().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "mail jane.doe@example.org"}]
    )
    return r.choices[0].message.content


@ironhost.protect_agent
async def ask_async() -> str:
    r = await openai.AsyncOpenAI().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "async"}]
    )
    return r.choices[0].message.content


print("decorator:", ask())
print("async:", asyncio.run(ask_async()))
with ironhost.AgentRuntime() as rt:
    print("runtime agent:", rt.agent_id)
    openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    m = rt.get_metrics()
status = ironhost.current()
print("host agent:", status.agent_id, m["agent_id"], status.llm_calls, status.budget_usd)
# The function's figures are the host agent's; no agent of another budget can be opened here.
print("function figures:", ask.ironhost.agent_id == status.agent_id, ask.ironhost.metrics()["llm_calls"])
try:
    with ironhost.AgentRuntime(budget=1e6) as rt:
        rt.start_agent(__file__)
    print("start_agent: opened")
except ironhost.IronhostError as refused:
    print("start_agent:", "refused" if "ironhost start" in str(refused) else refused)
try:
    from ironhost import _native

    _native.open_agent({"script": "x", "cwd": "."})
    print("open_agent: opened")
except ironhost.IronhostError as refused:
    print("open_agent:", "refused" if "ironhost start" in str(refused) else refused)
