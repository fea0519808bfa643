"""A CrewAI crew (researcher -> writer, sequential) under @ironhost.protect_agent: every LLM call
the crew makes goes through the policy chain, priced against one budget."""

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from crewai import LLM, Agent, Crew, Process, Task  # noqa: E402

import ironhost  # noqa: E402


@ironhost.protect_agent(budget=1.0, name="research-crew")
def research(company: str) -> str:
    llm = LLM(model="gpt-4o-mini")
    researcher = Agent(role="Researcher", goal=f"Find facts about {company}", backstory="A market analyst.", llm=llm)
    writer = Agent(role="Writer", goal="Write a crisp brief", backstory="A sales writer.", llm=llm)
    facts = Task(description=f"Research {company}: size, market, recent news", expected_output="Bullet facts", agent=researcher)
    brief = Task(description=f"Write a three-line brief on {company}", expected_output="Three lines", agent=writer, context=[facts])
    return str(Crew(agents=[researcher, writer], tasks=[facts, brief], process=Process.sequential).kickoff())


if __name__ == "__main__":
    brief = research("Acme")
    m = research.ironhost.metrics()
    print(f"brief: {brief[:80]}\n{m['llm_calls']} calls, ${m['cost_usd']:.6f} of ${m['budget_usd']:.2f}")
    assert brief
    assert m["llm_calls"] == 2 and list(m["cost_by_model"]) == ["gpt-4o-mini"]
