"""Sends a prompt with an email to the echo model in a loop and prints what the provider saw,
until the file named in argv[1] exists."""

import os
import sys
import time

import openai

stop_file = sys.argv[1]
client = openai.OpenAI()
for k in range(1, 401):
    if os.path.exists(stop_file):
        sys.exit(0)
    r = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": f"Call {k}: write to ada@example.org today."}],
    )
    print(f"call {k}: {r.choices[0].message.content}", flush=True)
    time.sleep(0.03)
print("the stop file never appeared", flush=True)
sys.exit(4)
