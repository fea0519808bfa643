"""Ten LLM calls (one with an email in it) and two tool calls, reporting progress, then exits 0."""

import openai

import ironhost


@ironhost.tool("crm-lookup")
def lookup(company):
    return {"company": company, "employees": 42}


client = openai.OpenAI()
for i in range(1, 11):
    text = f"Summarise lead {i}."
    if i == 5:
        text = "Write to grace.hopper@example.org about the offer."
    client.chat.completions.create(
        model="gpt-4o-mini",
        max_tokens=20,
        messages=[{"role": "user", "content": text}],
    )
    if i in (3, 7):
        print("tool:", lookup(f"Company {i}"), flush=True)
    ironhost.progress(i, 10, "leads")
    print(f"call {i} done", flush=True)
