"""Makes one call the simulator takes long to answer; the test stops it with a signal."""

import os

import openai

client = openai.OpenAI()
print(f"calling (process {os.getpid()})", flush=True)
try:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
finally:
    print("unwound", flush=True)
