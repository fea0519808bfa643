"""An AutoGPT-style goal loop: plan, act on each step, remember results, until the goal is done
or the budget stops it. ironhost's budget is the loop's hard stop: a runaway planner cannot
spend past it, and the loop ends with BudgetExceeded instead of a surprise bill."""

import openai

import ironhost

client = openai.OpenAI()


def llm(prompt: str, model: str = "gpt-4o-mini") -> str:
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=300
    )
    return r.choices[0].message.content


def pursue(goal: str, max_rounds: int) -> list:
    memory = []
    for _ in range(max_rounds):
        plan = llm(f"PLAN the goal: {goal}. Done so far: {len(memory)} steps.")
        for step in (s.strip() for s in plan.split(";")):
            memory.append((step, llm(f"DO the step: {step}", model="gpt-4o")))
    return memory


@ironhost.protect_agent(budget=0.05, name="goal-loop")
def run(goal: str, max_rounds: int) -> list:
    return pursue(goal, max_rounds)


if __name__ == "__main__":
    done = run("map the CRM market", max_rounds=1)
    print(f"one round: {len(done)} steps")
    assert [s for s, _ in done] == ["research the market", "list three competitors", "write the summary"]
    # The competitor step's answer named an email address; it reached memory redacted.
    assert "[EMAIL_REDACTED]" in done[1][1] and "@" not in done[1][1]
    try:
        run("map the CRM market", max_rounds=1000)
        raise AssertionError("the budget should have stopped the loop")
    except ironhost.BudgetExceeded as stop:
        print(f"stopped: {stop}")
    m = run.ironhost.metrics()
    print(f"spent ${m['cost_usd']:.4f} of ${m['budget_usd']:.2f} in {m['llm_calls']} calls")
    assert m["cost_usd"] <= 0.05 and m["llm_calls"] > 4 and m["denied"] == 1
