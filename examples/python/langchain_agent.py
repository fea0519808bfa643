"""A LangChain agent (a ReAct-style text protocol: Action / Observation / Final Answer) with a
tool, wrapped in IronhostChain: the model's calls and the tool's are governed, and the final
answer reaches the user redacted."""

from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import ironhost
from ironhost.langchain import IronhostChain

model = ChatOpenAI(model="gpt-4o-mini")


@tool
@ironhost.tool("crm_lookup")
def crm_lookup(company: str) -> str:
    """Who owns a company's account."""
    return f"{company} is owned by Dana Whitfield in the enterprise team"


TOOLS = {"crm_lookup": crm_lookup}


def agent(question: str, max_steps: int = 5) -> str:
    transcript = f"Question: {question}"
    for _ in range(max_steps):
        reply = model.invoke(transcript).content
        if reply.startswith("Final Answer:"):
            return reply.removeprefix("Final Answer:").strip()
        action = dict(line.split(": ", 1) for line in reply.splitlines())
        observation = TOOLS[action["Action"]].invoke({"company": action["Action Input"]})
        transcript += f"\n{reply}\nObservation: {observation}"
    raise RuntimeError("no answer within the step limit")


chain = IronhostChain(RunnableLambda(agent), budget=0.5, name="crm-agent")

if __name__ == "__main__":
    answer = chain.invoke("Who owns the Acme account?")
    m = chain.metrics()
    print(f"answer: {answer}\n{m['llm_calls']} LLM calls, {m['tool_calls']} tool steps")
    assert answer == "Acme is owned by Dana Whitfield ([EMAIL_REDACTED])."
    assert m["llm_calls"] == 2 and m["tool_calls"] == 3  # input, crm_lookup, output
