"""Calls the model in a loop until it is stopped; says so when interrupted."""

import time

import openai

client = openai.OpenAI()
try:
    for i in range(1, 2_000):
        client.chat.completions.create(
            model="gpt-4o-mini",
            max_tokens=20,
            messages=[{"role": "user", "content": f"Progress report {i}."}],
        )
        print(f"call {i} done", flush=True)
        time.sleep(0.02)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
print("ran out of calls", flush=True)
