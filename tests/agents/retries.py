"""One call that the simulator rate-limits first, and one that keeps failing with 500s."""

import openai

client = openai.OpenAI()
r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "first"}])
print("first answered:", bool(r.choices[0].message.content), flush=True)
try:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "second"}])
except openai.InternalServerError as e:
    print("second failed:", e.status_code, flush=True)
