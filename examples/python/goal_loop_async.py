"""An async goal loop with workers: sub-goals run concurrently as asyncio tasks (they inherit the
agent), and a watchdog stops a runaway sub-agent started with AgentRuntime.start_agent."""

import asyncio
import pathlib
import tempfile

import openai

import ironhost

RUNAWAY = """
import openai
client = openai.OpenAI()
while True:  # a sub-agent that never decides it is done
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "think more"}])
"""


async def work(client: openai.AsyncOpenAI, step: str) -> str:
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"DO the step: {step}"}])
    return r.choices[0].message.content


async def main() -> None:
    async with ironhost.AgentRuntime(budget=5.0, name="planner") as rt:
        client = openai.AsyncOpenAI()
        plan = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "PLAN the goal: launch in Spain"}])
        steps = [s.strip() for s in plan.choices[0].message.content.split(";")]
        results = await asyncio.gather(*(work(client, s) for s in steps))
        assert len(results) == 3 and rt.get_metrics()["llm_calls"] == 4

        with tempfile.TemporaryDirectory() as tmp:
            script = pathlib.Path(tmp) / "runaway.py"
            script.write_text(RUNAWAY)
            sub = rt.start_agent(script)
            while rt.get_metrics(sub)["llm_calls"] < 20:  # the watchdog's limit
                await asyncio.sleep(0.01)
            state = await asyncio.to_thread(rt.stop_agent, sub)
        sm = rt.get_metrics(sub)
        print(f"planner: {rt.get_metrics()['llm_calls']} calls; sub-agent {sub}: {sm['llm_calls']} calls, {state}")
        assert state == "stopped" and sm["exit_code"] == 130
        assert rt.get_metrics()["llm_calls"] == 4  # the sub-agent's calls are its own


if __name__ == "__main__":
    asyncio.run(main())
