"""CrewAI agents with a tool: the tool is an ironhost tool, and a contact's email the model
mentions never reaches the crew's output."""

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from crewai import LLM, Agent, Crew, Task  # noqa: E402

import ironhost  # noqa: E402

if __name__ == "__main__":
    with ironhost.AgentRuntime(budget=1.0, name="account-crew") as rt:
        llm = LLM(model="gpt-4o-mini")
        manager = Agent(role="Account manager", goal="Name the billing contact", backstory="Knows every account.", llm=llm)
        task = Task(description="Who is the billing contact?", expected_output="A name and a way to reach them", agent=manager)
        answer = str(Crew(agents=[manager], tasks=[task]).kickoff())
        m = rt.get_metrics()
    print(f"answer: {answer}\nPII: {m['pii_by_kind']}")
    assert "[PHONE_REDACTED]" in answer and "555-2671" not in answer
    assert m["pii_by_kind"] == {"phone": 1}
