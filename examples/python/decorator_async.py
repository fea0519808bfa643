"""@protect_agent on an async function: concurrent calls with asyncio.gather all belong to the
agent and count against one budget."""

import asyncio

import openai

import ironhost


@ironhost.protect_agent(budget=0.5, name="fan-out")
async def research(companies: list) -> list:
    client = openai.AsyncOpenAI()

    async def one(c: str) -> str:
        r = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"One fact about {c}"}])
        return r.choices[0].message.content

    return await asyncio.gather(*(one(c) for c in companies))


if __name__ == "__main__":
    facts = asyncio.run(research([f"Company {i}" for i in range(8)]))
    m = research.ironhost.metrics()
    print(f"{len(facts)} facts, {m['llm_calls']} calls, p50 {m['latency_p50_ms']:.2f} ms, ${m['cost_usd']:.6f}")
    assert len(facts) == 8 and all(facts)
    assert m["llm_calls"] == 8 and m["state"] == "completed"
