"""Circuit breakers: a flaky enrichment API rate-limits; after repeated failures the breaker opens
and later calls are answered at once (with the last good result for the same arguments, or
refused with CircuitOpen) instead of hammering the service."""

import ironhost

calls_made = []


@ironhost.tool("enrich")
def enrich(domain: str) -> dict:
    calls_made.append(domain)
    if len(calls_made) > 2:  # the API's quota ran out
        raise ironhost.ToolError("429 quota exceeded", kind="rate-limited")
    return {"domain": domain, "employees": 120}


@ironhost.protect_agent(name="enricher")
def run(domains: list) -> dict:
    out = {"ok": 0, "failed": 0, "blocked": 0}
    for d in domains:
        try:
            assert enrich(d)["domain"] == d
            out["ok"] += 1
        except ironhost.CircuitOpen:
            out["blocked"] += 1
        except ironhost.ToolError:
            out["failed"] += 1
    return out


if __name__ == "__main__":
    domains = [f"lead{i}.example" for i in range(20)]
    out = run(domains)
    m = run.ironhost.metrics()
    print(f"{out}; the API was called {len(calls_made)} times for {len(domains)} leads")
    assert out["ok"] == 2 and out["failed"] == 5
    assert out["blocked"] == 13 and len(calls_made) == 7
    assert m["tool_calls"] == 20 and m["tool_errors"] == 5
