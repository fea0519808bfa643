"""openai-agents: an Agent with one function tool, run with Runner.run_sync on the SDK's
default model, and streamed with Runner.run_streamed."""

import asyncio
import json
import sys
import traceback

from agents import Agent, Runner, function_tool

PII = "Contact jane.doe@example.com, SSN 123-45-6789."


@function_tool
def lookup_contact(name: str) -> str:
    """Look a contact up in the CRM."""
    return PII


def emit(case, text, **extra):
    print(json.dumps({"case": case, "text": text, **extra}), flush=True)


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
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
