"""Spends on the simulator until told to stop: one call at a time, reporting progress, and
waiting (without stopping) while the budget refuses calls, so a raised limit lets it go on.

Args: the stop file (the agent ends once it exists), the units in all (for the projection)."""

import sys
import time
from pathlib import Path

import openai

import ironhost

stop = Path(sys.argv[1])
total = int(sys.argv[2])
client = openai.OpenAI()
done = 0
while not stop.exists():
    try:
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "qualify lead " + "x" * 2000}],
            max_tokens=50,
        )
        done += 1
        ironhost.progress(min(done, total), total, "leads")
        print("call ok", flush=True)
    except Exception as refused:  # the budget refuses calls past the limit: wait for a new one
        print("refused:", type(refused).__name__, flush=True)
    time.sleep(0.05)
print("stopped", flush=True)
