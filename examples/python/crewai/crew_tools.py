"""CrewAI tools, unchanged (no ironhost decorator on them), under @ironhost.protect_agent: every
call of them goes through the policy chain like an `@ironhost.tool`. The crew's agent calls a
contact lookup whose result names an email address (the crew gets it redacted); a flaky
enrichment tool fails until the circuit breaker opens, after which the breaker answers for it
(the last good result, or a refusal the crew records as a CrewAI ToolFailure) and the
enrichment API is not called again."""

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from crewai import LLM, Agent, Crew, Task  # noqa: E402
from crewai.tools import BaseTool, tool  # noqa: E402

import ironhost  # noqa: E402

calls = {"lookup_contact": 0, "enrich_company": 0}


@tool("lookup_contact", result_as_answer=True)
def lookup_contact(company: str) -> str:
    """Who owns a company's account."""
    calls["lookup_contact"] += 1
    return f"{company} is owned by Dana Whitfield (dana.whitfield@acme.example)"


class EnrichCompany(BaseTool):
    name: str = "enrich_company"
    description: str = "A company's size, from its domain."

    def _run(self, domain: str) -> str:
        calls["enrich_company"] += 1
        if domain != "acme.example":
            raise ConnectionError("enrichment API unreachable")
        return "acme.example: 120 employees"


enrich = EnrichCompany()


def crew_task(prompt: str):  # the crew's agent calls the tool the prompt asks for
    analyst = Agent(role="Account analyst", goal="Answer account questions with the tools",
                    backstory="Knows the CRM.", llm=LLM(model="gpt-4o-mini"),
                    tools=[lookup_contact, enrich])
    task = Task(description=prompt, expected_output="A short answer", agent=analyst)
    return Crew(agents=[analyst], tasks=[task]).kickoff()


@ironhost.protect_agent(budget=1.0, name="tool-crew")
def run() -> dict:
    out = {"owner": str(crew_task("CREW: who owns the Acme account?"))}
    # The tool's own API (what the crew's native tool calls call): one good answer, then the
    # API fails five times and its circuit opens.
    out["enriched"] = [enrich.run(domain="acme.example")]
    for i in range(5):
        try:
            enrich.run(domain=f"lead{i}.example")
        except ConnectionError as e:
            out["enriched"].append(f"failed: {e}")
    # Open: the same question gets the last good answer, a new one a refusal (a ToolFailure),
    # and through the crew too; the API is not called.
    out["enriched"].append(enrich.run(domain="acme.example"))
    # The ReAct loop's way of calling a tool (CrewStructuredTool.invoke) is governed too.
    out["enriched"].append(enrich.to_structured_tool().invoke({"domain": "acme.example"}))
    out["refused"] = enrich.run(domain="lead9.example")
    crew = crew_task("CREW: enrich lead9.example")
    out["crew_failures"] = [r.failure for r in crew.tasks_output[0].tool_failures]
    return out


if __name__ == "__main__":
    out = run()
    m = run.ironhost.metrics()
    print(f"owner: {out['owner']}")
    for line in out["enriched"]:
        print(f"enrich: {line}")
    print(f"refused: {out['refused']!r}\ncrew saw: {out['crew_failures']}")
    print(f"{m['tool_calls']} tool calls, {m['tool_errors']} errors, {m['tool_fallbacks']} fallbacks; "
          f"the enrichment API was called {calls['enrich_company']} times")
    assert out["owner"] == "Acme is owned by Dana Whitfield ([EMAIL_REDACTED])"
    assert out["enriched"][0] == out["enriched"][-2] == out["enriched"][-1] == "acme.example: 120 employees"
    assert out["enriched"][1:6] == ["failed: enrichment API unreachable"] * 5
    assert out["refused"].code == "circuit_open" and "circuit-breaker" in out["refused"].message
    assert [f.code for f in out["crew_failures"]] == ["circuit_open"]
    assert calls == {"lookup_contact": 1, "enrich_company": 6}
    # lookup, 6 runs of enrich, two fallbacks, two refusals (direct, through the crew)
    assert m["tool_calls"] == 11 and m["tool_errors"] == 5 and m["tool_fallbacks"] == 2
