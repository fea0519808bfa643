"""langgraph: the prebuilt ReAct agent with one tool, over ChatOpenAI."""

import json
import sys
import traceback

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


@tool
def lookup_contact(name: str) -> str:
    """Look a contact up in the CRM."""
    return PII


def emit(case, text, **extra):
    print(json.dumps({"case": case, "text": text, **extra}), flush=True)


def main():
    agent = create_react_agent(ChatOpenAI(model="gpt-4o-mini"), [lookup_contact])
    result = agent.invoke({"messages": [("user", PII)]})
    messages = result["messages"]
    emit("react_agent", messages[-1].text, messages=[m.type for m in messages])


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
