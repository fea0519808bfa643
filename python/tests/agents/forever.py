"""An agent script that calls the simulator until it is stopped."""

import time

import openai

oa = openai.OpenAI()
while True:
    oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}])
    time.sleep(0.01)
