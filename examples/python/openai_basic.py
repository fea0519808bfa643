"""Raw OpenAI SDK calls (sync, streamed) under @ironhost.protect_agent: the code is plain
`openai`; ironhost puts every call through the policy chain."""

import openai

import ironhost


@ironhost.protect_agent(budget=1.0)
def summarise(notes: str) -> tuple:
    client = openai.OpenAI()
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Summarise sales notes."}, {"role": "user", "content": notes}],
    )
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "One line on next steps."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    return reply.choices[0].message.content, streamed


if __name__ == "__main__":
    text, streamed = summarise("Met Acme; they want a pilot in Q3.")
    m = summarise.ironhost.metrics()
    print(f"summary: {text}\nnext: {streamed}")
    print(f"{m['llm_calls']} calls, {m['input_tokens']}+{m['output_tokens']} tokens, ${m['cost_usd']:.6f} of ${m['budget_usd']:.2f}")
    assert text and streamed
    assert m["llm_calls"] == 2 and m["cost_by_model"].keys() == {"gpt-4o-mini"}
    assert 0 < m["cost_usd"] < 1.0
