"""A small agent script for runtime_agents.py: researches three companies."""

import openai

import ironhost

client = openai.OpenAI()
for i, company in enumerate(["Acme", "Initech", "Globex"], 1):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"Research {company}"}])
    ironhost.progress(i, 3, "companies")
