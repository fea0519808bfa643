"""Spends a budget shared with other hosts: 16 threads call the model until the budget refuses
them; prints `spent N calls, refused M` and exits 0."""

import threading

import openai
from ironhost.errors import BudgetExceeded

client = openai.OpenAI(max_retries=0)
lock = threading.Lock()
done = {"ok": 0, "refused": 0}


def spend() -> None:
    while True:
        try:
            client.chat.completions.create(
                model="gpt-4o",
                max_tokens=100,
                messages=[{"role": "user", "content": "Summarise this lead in one line."}],
            )
        except BudgetExceeded:
            with lock:
                done["refused"] += 1
            return
        with lock:
            done["ok"] += 1


threads = [threading.Thread(target=spend) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"spent {done['ok']} calls, refused {done['refused']}", flush=True)
