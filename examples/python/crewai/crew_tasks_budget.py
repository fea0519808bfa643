"""A CrewAI crew with more tasks than its budget covers: ironhost stops it with BudgetExceeded
before it overspends, and the tasks done so far are known."""

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from crewai import LLM, Agent, Crew, Task  # noqa: E402

import ironhost  # noqa: E402

done = []


@ironhost.protect_agent(budget=0.01, name="big-crew")
def run() -> None:
    llm = LLM(model="gpt-4o", max_tokens=400)
    analyst = Agent(role="Analyst", goal="Analyse each region", backstory="Thorough.", llm=llm)
    tasks = [
        Task(description=f"Analyse region {r} in depth", expected_output="An analysis", agent=analyst,
             callback=lambda out: done.append(out))
        for r in range(50)
    ]
    Crew(agents=[analyst], tasks=tasks).kickoff()


if __name__ == "__main__":
    try:
        run()
        raise AssertionError("the budget should have stopped the crew")
    except ironhost.BudgetExceeded as stop:
        print(f"stopped after {len(done)} of 50 tasks: {stop}")
    m = run.ironhost.metrics()
    print(f"spent ${m['cost_usd']:.4f} of ${m['budget_usd']:.2f}")
    assert 0 < len(done) < 50
    assert m["cost_usd"] <= 0.01 and m["denied"] >= 1
