"""A tool that works once, then fails with rate limits until the circuit opens."""

import ironhost

state = {"failing": False, "ran": 0}


@ironhost.tool("linkedin")
def lookup(company):
    state["ran"] += 1
    if state["failing"]:
        raise ironhost.ToolError("429 Too Many Requests", kind="rate-limited")
    return {"company": company, "employees": 120}


print("first:", lookup("Acme"), flush=True)
state["failing"] = True
for i in range(5):
    try:
        lookup("Acme")
    except ironhost.ToolError as e:
        print(f"failure {i + 1}: {e}", flush=True)
before = state["ran"]
print("fallback:", lookup("Acme"), flush=True)
print("ran after open:", state["ran"] - before, flush=True)
try:
    lookup("Globex")
except ironhost.CircuitOpen as e:
    print("no fallback:", e.code, flush=True)
