"""Cost optimization: a model cascade. Ask the cheap model first (allowed to say UNSURE), escalate
to the expensive one only then; ironhost's per-model costs show what the cascade saved."""

import openai

import ironhost

client = openai.OpenAI()
QUESTIONS = ["Is Q3 revenue up?", "HARD: forecast churn for 2027", "Is the invoice paid?", "HARD: price the enterprise tier"]


def ask(model: str, q: str) -> str:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": q}]).choices[0].message.content


@ironhost.protect_agent(name="cascade")
def cascade(q: str) -> str:
    answer = ask("gpt-4o-mini", f"Answer or say UNSURE: {q}")
    return ask("o1", q) if answer == "UNSURE" else answer


@ironhost.protect_agent(name="always-best")
def always_best(q: str) -> str:
    return ask("o1", q)


if __name__ == "__main__":
    for q in QUESTIONS:
        assert cascade(q) != "UNSURE"
        always_best(q)
    c, b = cascade.ironhost.metrics(), always_best.ironhost.metrics()
    print(f"cascade:     ${c['cost_usd']:.5f}  {c['cost_by_model']}")
    print(f"always o1:   ${b['cost_usd']:.5f}")
    print(f"saved {100 * (1 - c['cost_usd'] / b['cost_usd']):.0f}%")
    assert c["cost_by_model"]["o1"] < b["cost_usd"]
    assert c["cost_usd"] < b["cost_usd"]
