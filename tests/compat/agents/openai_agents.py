"""openai-agents: an Agent with one function tool, run with Runner.run_sync on the SDK's
default model, and streamed with Runner.run_streamed."""

import asyncio

from agents import Agent, Runner, function_tool

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


@function_tool
def lookup_contact(name: str) -> str:
    """Look a contact up in the CRM."""
    return PII


async def streamed(agent):
    result = Runner.run_streamed(agent, PII)
    deltas = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)
    return result.final_output, "".join(deltas)


def main():
    agent = Agent(name="Assistant", instructions="You are a helpful assistant.", tools=[lookup_contact])

    result = Runner.run_sync(agent, PII)
    emit("run_sync", result.final_output)

    final, deltas = asyncio.run(streamed(agent))
    emit("run_streamed", final, deltas=deltas)


if __name__ == "__main__":
    run(main)
