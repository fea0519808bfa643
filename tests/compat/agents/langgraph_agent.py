"""langgraph: the prebuilt ReAct agent with one tool, over ChatOpenAI."""


from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


@tool
def lookup_contact(name: str) -> str:
    """Look a contact up in the CRM."""
    return PII


def main():
    agent = create_react_agent(ChatOpenAI(model="gpt-4o-mini"), [lookup_contact])
    result = agent.invoke({"messages": [("user", PII)]})
    messages = result["messages"]
    emit("react_agent", messages[-1].text, messages=[m.type for m in messages])


if __name__ == "__main__":
    run(main)
