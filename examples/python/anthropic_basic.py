"""Raw Anthropic SDK calls (sync, streamed, async) inside `with ironhost.AgentRuntime()`."""

import asyncio

import anthropic

import ironhost


async def brief(client: anthropic.AsyncAnthropic, topic: str) -> str:
    msg = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=200, messages=[{"role": "user", "content": f"Brief me on {topic}"}]
    )
    return msg.content[0].text


if __name__ == "__main__":
    with ironhost.AgentRuntime(budget=2.0, name="anthropic-basic") as rt:
        client = anthropic.Anthropic()
        msg = client.messages.create(
            model="claude-haiku-4-5", max_tokens=200, system="You are terse.",
            messages=[{"role": "user", "content": "What is a renewal risk?"}],
        )
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=200, messages=[{"role": "user", "content": "Name one signal."}]
        ) as s:
            streamed = "".join(s.text_stream)

        async def briefs() -> list:
            # asyncio.run copies this context: the calls belong to the runtime's agent.
            aclient = anthropic.AsyncAnthropic()
            return await asyncio.gather(*(brief(aclient, t) for t in ("churn", "upsell")))

        answers = asyncio.run(briefs())
        m = rt.get_metrics()
    print(f"answer: {msg.content[0].text}\nstreamed: {streamed}\nbriefs: {len(answers)}")
    print(f"{m['llm_calls']} calls, ${m['cost_usd']:.6f}")
    assert msg.content[0].text and streamed and all(answers)
    assert m["llm_calls"] == 4 and list(m["cost_by_model"]) == ["claude-haiku-4-5"]
