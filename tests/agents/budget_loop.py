"""Calls the model until the budget stops it; the BudgetExceeded is left uncaught."""

import openai

client = openai.OpenAI()
for i in range(1, 10_000):
    client.chat.completions.create(
        model="gpt-4o",
        max_tokens=200,
        messages=[{"role": "user", "content": f"Summarise lead number {i}."}],
    )
    print(f"call {i} done", flush=True)
