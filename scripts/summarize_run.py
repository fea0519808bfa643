"""Prints `ironhost policy run` JSON lines (stdin) as one readable line per input."""

import json
import sys

for raw in sys.stdin:
    r = json.loads(raw)
    if "error" in r:
        print(f"line {r['line']}: bad input: {r['error']}")
        continue
    verdicts = ", ".join(
        p["policy"] + "=" + p["verdict"] + ("" if p["enforced"] else "*") for p in r["policies"]
    )
    decision = r["decision"]
    if decision == "continue":
        detail = json.dumps(r["value"]["messages"][-1]["content"])
    elif decision == "deny":
        detail = r["policy"] + ": " + r["denial"]["code"]
    elif decision == "respond":
        detail = r["policy"] + ": " + json.dumps(r["response"]["message"]["content"])
    else:
        detail = ""
    print(f"line {r['line']}: {decision:<8} {detail:<38} [{verdicts}] {r['latency_ns'] / 1000:.1f} µs")
print("(* = recorded, not enforced: monitor mode, or a failure its fail-open mode let through)")
