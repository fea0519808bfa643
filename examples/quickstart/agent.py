"""A small agent, written as a customer would: the official OpenAI SDK, one tool, no ironhost
code in the call path. Run it with `ironhost start examples/quickstart/agent.py --budget 5`.

Under ironhost every call below goes through the default policy bundle: the email in the prompt
is redacted before it leaves the host, the budget is enforced, and the tool is watched by the
circuit breaker. With no provider key set, the built-in simulator answers.
"""

import ironhost
import openai

client = openai.OpenAI()


@ironhost.tool("company_lookup")
def company_lookup(domain: str) -> dict:
    # A stand-in for a real enrichment service.
    return {"domain": domain, "employees": 240, "industry": "robotics"}


company = company_lookup("acme-robotics.example")
print(f"lookup: {company}")

# `echo` makes the simulator answer with the prompt exactly as it left the host.
seen = client.chat.completions.create(
    model="echo",
    messages=[{"role": "user", "content": "Draft a note to jane.doe@example.org about Acme."}],
)
print(f"the provider received: {seen.choices[0].message.content}")

stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": f"Write one line about {company['domain']}."}],
    stream=True,
)
print("answer: " + "".join(c.choices[0].delta.content or "" for c in stream if c.choices))

status = ironhost.current()
print(f"{status.agent_id}: {status.llm_calls} LLM calls, ${status.cost_usd:.6f} spent")
