"""Spends on its first run, then crashes; the restarted run reports what it finds.

With ``--segfault`` the first run ends in a native crash (a read of address 0) instead of an
exception."""

import ctypes
import sys

import ironhost
import openai

status = ironhost.current()
if status.run == 1:
    openai.OpenAI().chat.completions.create(
        model="gpt-4o", max_tokens=100, messages=[{"role": "user", "content": "hello"}]
    )
    print(f"run 1 spent: {ironhost.current().cost_usd:.6f}", flush=True)
    if "--segfault" in sys.argv:
        ctypes.string_at(0)
    raise RuntimeError("the agent crashed")
print(f"run {status.run} sees {status.cost_usd:.6f} spent by {status.agent_id}", flush=True)
