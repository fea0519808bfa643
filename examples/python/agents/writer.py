"""A small agent script for runtime_agents.py: drafts two emails with Claude."""

import anthropic

client = anthropic.Anthropic()
for name in ["Acme", "Globex"]:
    client.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=[{"role": "user", "content": f"Draft an intro to {name}"}])
