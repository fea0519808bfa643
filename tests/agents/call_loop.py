"""Makes N chat calls (argv[1]), each asking about an email address and, if given, carrying
the word argv[2] (a fixture policy reacts to it). With `--pause` as argv[3], waits 1.1 s halfway,
so the calls span at least two seconds. Prints `N calls done`."""

import sys
import time

import openai

n = int(sys.argv[1])
word = sys.argv[2] if len(sys.argv) > 2 else ""
pause = sys.argv[3:4] == ["--pause"]
client = openai.OpenAI()
for i in range(1, n + 1):
    if pause and i == n // 2 + 1:
        time.sleep(1.1)
    client.chat.completions.create(
        model="gpt-4o-mini",
        max_tokens=20,
        messages=[
            {"role": "user", "content": f"Lead {i} {word}: is lead{i}@example.com valid?"}
        ],
    )
print(f"{n} calls done", flush=True)
