"""A LangChain tool-calling agent: the model is bound to a tool (`bind_tools`), asks for it
through the provider's own tool calls, gets its result as a ToolMessage, then answers. Wrapped
in IronhostChain: the model's calls and the tool's are governed, and the final answer reaches
the user redacted."""

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import ironhost
from ironhost.langchain import IronhostChain


@tool
@ironhost.tool("crm_lookup")
def crm_lookup(company: str) -> str:
    """Who owns a company's account."""
    return f"{company} is owned by Dana Whitfield in the enterprise team"


TOOLS = {"crm_lookup": crm_lookup}
model = ChatOpenAI(model="gpt-4o-mini").bind_tools(list(TOOLS.values()))


def agent(question: str, max_steps: int = 5) -> str:
    messages = [HumanMessage(question)]
    for _ in range(max_steps):
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return reply.content
        for call in reply.tool_calls:
            result = TOOLS[call["name"]].invoke(call["args"])
            messages.append(ToolMessage(result, tool_call_id=call["id"]))
    raise RuntimeError("no answer within the step limit")


chain = IronhostChain(RunnableLambda(agent), budget=0.5, name="crm-agent")

if __name__ == "__main__":
    answer = chain.invoke("Who owns the Acme account?")
    m = chain.metrics()
    print(f"answer: {answer}\n{m['llm_calls']} LLM calls, {m['tool_calls']} tool steps")
    assert answer == "Acme is owned by Dana Whitfield ([EMAIL_REDACTED])."
    assert m["llm_calls"] == 2 and m["tool_calls"] == 3  # input, crm_lookup, output
