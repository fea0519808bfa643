"""An agent driven by the dashboard's browser tests, written as a customer would write one (the
official OpenAI SDK, an `@ironhost.tool`), that acts on commands instead of a script: it waits
for `NNNN.json` files in the folder given as its argument, carries each out, and prints one JSON
line per command (`{"n": N, "result": ...}`). A file named `stop` ends it.
"""

import json
import os
import sys
import time

import ironhost
import openai

client = openai.OpenAI()
inbox = sys.argv[1]


@ironhost.tool("crm_lookup")
def crm_lookup(company: str, fail: bool = False) -> dict:
    if fail:
        raise ironhost.ToolError("429 Too Many Requests", kind="rate-limited")
    return {"company": company, "employees": 120}


def run(cmd: dict):
    do = cmd["do"]
    if do == "echo":
        # The simulator's `echo` model answers with the prompt as the provider received it.
        answer = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": cmd["text"]}]
        )
        return answer.choices[0].message.content
    if do == "chat":
        answer = client.chat.completions.create(
            model=cmd.get("model", "gpt-4o-mini"),
            max_tokens=cmd.get("max_tokens", 40),
            messages=[{"role": "user", "content": cmd["text"]}],
        )
        return answer.choices[0].message.content
    if do == "tool":
        return crm_lookup(cmd["company"], cmd.get("fail", False))
    if do == "progress":
        ironhost.progress(cmd["done"], cmd["total"], cmd.get("unit", "leads"))
        return cmd["done"]
    if do == "units":
        # Finished units of work as the lead-gen demo reports its leads: each with its outcome,
        # its time and the fallback that served it, if one did.
        for u in cmd["units"]:
            ironhost.unit_done(u.get("ok", True), seconds=u.get("seconds"), fallback=u.get("fallback"))
        return len(cmd["units"])
    raise ValueError(f"unknown command {do!r}")


while not os.path.exists(os.path.join(inbox, "stop")):
    names = sorted(n for n in os.listdir(inbox) if n.endswith(".json"))
    if not names:
        time.sleep(0.02)
        continue
    for name in names:
        path = os.path.join(inbox, name)
        with open(path) as f:
            cmd = json.load(f)
        os.remove(path)
        try:
            line = {"n": cmd["n"], "result": run(cmd)}
        except Exception as e:  # the test reads the error kind and message
            line = {"n": cmd["n"], "error": type(e).__name__, "message": str(e)}
        print(json.dumps(line), flush=True)
