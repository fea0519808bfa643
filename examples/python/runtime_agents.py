"""Several agents in one process: AgentRuntime starts agent scripts in threads, each its own
agent with its own figures, and compares them when they are done."""

import pathlib

import ironhost

HERE = pathlib.Path(__file__).parent

if __name__ == "__main__":
    with ironhost.AgentRuntime(budget=1.0, name="supervisor") as rt:
        ids = [rt.start_agent(HERE / "agents" / f"{n}.py") for n in ("researcher", "writer")]
        states = [rt.wait(i, timeout=60) for i in ids]
        rows = [rt.get_metrics(i) for i in ids]
    for m in rows:
        print(f"{m['agent_id']:12} {m['name']:10} {m['state']:9} {m['llm_calls']} calls ${m['cost_usd']:.6f} {sorted(m['cost_by_model'])}")
    assert states == ["completed", "completed"]
    assert [m["llm_calls"] for m in rows] == [3, 2]
    assert rows[0]["cost_by_model"].keys() == {"gpt-4o-mini"} and rows[1]["cost_by_model"].keys() == {"claude-haiku-4-5"}
