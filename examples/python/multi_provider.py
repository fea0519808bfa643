"""One agent, two providers: route each task to the model that suits it; ironhost prices and
budgets both, and reports cost by model."""

import anthropic
import openai

import ironhost

ROUTES = {"classify": ("openai", "gpt-4o-mini"), "write": ("anthropic", "claude-haiku-4-5")}


def ask(kind: str, prompt: str) -> str:
    provider, model = ROUTES[kind]
    if provider == "openai":
        r = openai.OpenAI().chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        return r.choices[0].message.content
    m = anthropic.Anthropic().messages.create(model=model, max_tokens=300, messages=[{"role": "user", "content": prompt}])
    return m.content[0].text


@ironhost.protect_agent(budget=1.0, name="router")
def handle(ticket: str) -> dict:
    return {"label": ask("classify", f"Label this ticket: {ticket}"), "reply": ask("write", f"Reply to: {ticket}")}


if __name__ == "__main__":
    for t in ("Invoice is wrong", "Cannot log in", "Cancel my plan"):
        out = handle(t)
        assert out["label"] and out["reply"]
    m = handle.ironhost.metrics()
    for model, cost in sorted(m["cost_by_model"].items()):
        print(f"{model:18} ${cost:.6f}")
    print(f"total ${m['cost_usd']:.6f} over {m['llm_calls']} calls")
    assert set(m["cost_by_model"]) == {"gpt-4o-mini", "claude-haiku-4-5"}
    assert m["llm_calls"] == 6
    assert abs(sum(m["cost_by_model"].values()) - m["cost_usd"]) < 1e-9
