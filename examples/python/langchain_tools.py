"""LangChain tools that are also ironhost tools: a flaky one trips the circuit breaker, and the
chain handles CircuitOpen instead of calling a failing service again."""

from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

import ironhost
from ironhost.langchain import IronhostChain

attempts = []


@tool
@ironhost.tool("weather")
def weather(city: str) -> str:
    """Today's weather in a city (its API is down)."""
    attempts.append(city)
    raise ironhost.ToolError("503 from the weather API", kind="unavailable")


def plan_trip(cities: list) -> dict:
    out = {}
    for city in cities:
        try:
            out[city] = weather.invoke({"city": city})
        except ironhost.CircuitOpen:
            out[city] = "skipped: weather service circuit open"
        except ironhost.ToolError:
            out[city] = "weather unavailable"
    return out


chain = IronhostChain(RunnableLambda(plan_trip), name="trips")

if __name__ == "__main__":
    cities = ["Lyon", "Porto", "Turin", "Ghent", "Graz", "Bern", "Oslo", "Riga"]
    out = chain.invoke(cities)
    for city, note in out.items():
        print(f"{city:6} {note}")
    assert list(out.values()).count("weather unavailable") == 5
    assert list(out.values()).count("skipped: weather service circuit open") == 3
    assert len(attempts) == 5  # the breaker spared the service three calls
