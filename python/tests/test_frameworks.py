"""Framework tools governed unchanged (`ironhost._frameworks`): LangChain's here (the package's
test environment has langchain-core); openai-agents, pydantic-ai and LangGraph run under
`ironhost start` in host/tests/compat_tools.rs, CrewAI in examples/python/crewai/crew_tools.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any, List, Tuple

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool, ToolException
from langchain_core.tools import tool as lc_tool

import ironhost
from ironhost import _context
from ironhost._target import ToolBegin, ToolEnd
from ironhost.testing import MockRuntime


def run_python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_importing_ironhost_imports_no_framework_and_hooks_one_when_it_loads() -> None:
    out = run_python(
        """
        import sys
        import ironhost
        frameworks = ("langchain_core", "langgraph", "agents", "pydantic_ai", "crewai")
        print(sorted(m for m in sys.modules if m.split(".")[0] in frameworks))
        from langchain_core.tools import BaseTool, StructuredTool, tool
        print(all(c.__dict__.get("__ironhost_hooked__") for c in (BaseTool, StructuredTool)))
        """
    )
    assert out.split("\n")[:2] == ["[]", "True"]


def test_a_framework_imported_before_ironhost_is_hooked_too() -> None:
    out = run_python(
        """
        from langchain_core.tools import tool

        @tool
        def lookup(name: str) -> str:
            \"\"\"Look up.\"\"\"
            return name

        import ironhost
        from ironhost.testing import MockRuntime
        with MockRuntime() as rt:
            lookup.invoke({"name": "Acme"})
        print(rt.tool_log)
        """
    )
    assert out.strip() == "[('mock-0001', 'lookup', True)]"


calls: List[str] = []


@lc_tool
def lookup(name: str) -> str:
    """Look a contact up."""
    calls.append(name)
    return f"{name}: Dana"


@lc_tool
async def alookup(name: str) -> str:
    """Look a contact up, asynchronously."""
    calls.append(name)
    return f"{name}: Lee"


@lc_tool
def flaky(query: str) -> str:
    """Search (its backend is down)."""
    calls.append(query)
    raise ConnectionError("backend unreachable")


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    calls.clear()
    flaky.handle_tool_error = False


def test_outside_any_agent_a_tool_is_a_plain_call() -> None:
    with MockRuntime() as rt:
        pass
    assert lookup.invoke({"name": "Acme"}) == "Acme: Dana"
    assert asyncio.run(alookup.ainvoke({"name": "Beta"})) == "Beta: Lee"
    with pytest.raises(ConnectionError):
        flaky.invoke({"query": "x"})
    assert rt.tool_log == [] and calls == ["Acme", "Beta", "x"]


def test_sync_and_async_tools_are_governed_once_under_their_names() -> None:
    with MockRuntime() as rt:
        assert lookup.invoke({"name": "Acme"}) == "Acme: Dana"
        assert asyncio.run(alookup.ainvoke({"name": "Beta"})) == "Beta: Lee"
        # A sync tool called asynchronously runs `_run` in a thread: still one call.
        assert asyncio.run(lookup.ainvoke({"name": "Gamma"})) == "Gamma: Dana"
    assert rt.tool_log == [("mock-0001", n, True) for n in ("lookup", "alookup", "lookup")]


def test_a_refusal_is_a_tool_exception_and_the_tool_does_not_run() -> None:
    with MockRuntime(failure_threshold=2) as rt:
        for _ in range(2):
            with pytest.raises(ConnectionError):  # the tool's own error, unchanged
                flaky.invoke({"query": "x"})
        with pytest.raises(ToolException) as refused:
            flaky.invoke({"query": "y"})
        # Also the ironhost exception it stands for.
        assert isinstance(refused.value, ironhost.CircuitOpen)
        assert refused.value.code == "circuit_open" and "circuit_open" in str(refused.value)
        # With the tool's own error handling on, the refusal is its error text.
        flaky.handle_tool_error = True
        assert "circuit_open" in flaky.invoke({"query": "z"})
    assert calls == ["x", "x"]
    assert [ok for _, _, ok in rt.tool_log] == [False, False]


def test_an_ironhost_tool_wrapped_by_langchain_counts_once() -> None:
    @lc_tool
    @ironhost.tool("weather")
    def weather(city: str) -> str:
        """Today's weather."""
        return f"{city}: sunny"

    @ironhost.tool("forecast")
    async def forecast(city: str) -> str:
        return f"{city}: rain"

    later = StructuredTool.from_function(coroutine=forecast, name="later", description="Forecast.")
    with MockRuntime() as rt:
        assert weather.invoke({"city": "Oslo"}) == "Oslo: sunny"
        assert asyncio.run(later.ainvoke({"city": "Riga"})) == "Riga: rain"
    assert rt.tool_log == [("mock-0001", "weather", True), ("mock-0001", "forecast", True)]


class Policies:
    """A target whose policies upper-case a lookup's name and answer `cached` themselves."""

    closed = False

    def __init__(self) -> None:
        self.seen: List[Tuple[str, Any]] = []
        self.ended: List[Tuple[bool, str, str]] = []

    def tool_begin(self, name: str, arguments: str) -> ToolBegin:
        args = json.loads(arguments)
        self.seen.append((name, args))
        if name == "cached":
            return ToolBegin(answer=json.dumps("from the policy"))
        return ToolBegin(ticket="ticket", arguments=json.dumps({**args, "name": args["name"].upper()}))

    def tool_end(self, ticket: Any, ok: bool, payload: str, kind: str) -> ToolEnd:
        self.ended.append((ok, payload, kind))
        return ToolEnd(False, ok)


def test_policies_rewrite_the_arguments_and_answer_calls() -> None:
    @lc_tool
    def cached(name: str) -> str:
        """Never runs under the policies."""
        calls.append(name)
        return "from the tool"

    policies = Policies()
    with _context.active(policies):
        assert lookup.invoke({"name": "acme"}) == "ACME: Dana"
        assert asyncio.run(alookup.ainvoke({"name": "beta"})) == "BETA: Lee"
        assert cached.invoke({"name": "x"}) == "from the policy"
    assert calls == ["ACME", "BETA"]
    assert policies.seen == [
        ("lookup", {"name": "acme"}),
        ("alookup", {"name": "beta"}),
        ("cached", {"name": "x"}),
    ]
    assert policies.ended == [(True, '"ACME: Dana"', ""), (True, '"BETA: Lee"', "")]


class Redacting(Policies):
    """A target whose policies redact `secret` in every result."""

    def tool_begin(self, name: str, arguments: str) -> ToolBegin:
        return ToolBegin(ticket="ticket", arguments=arguments)

    def tool_end(self, ticket: Any, ok: bool, payload: str, kind: str) -> ToolEnd:
        self.ended.append((ok, payload, kind))
        redacted = payload.replace("secret", "[REDACTED]")
        return ToolEnd(redacted != payload, ok, redacted)


def test_a_rewritten_result_keeps_the_type_the_framework_expects() -> None:
    @lc_tool(response_format="content_and_artifact")
    def report(name: str) -> Tuple[str, dict]:
        """A report and its data."""
        return f"{name}: secret plan", {"owner": "secret agent", "rows": 3}

    @lc_tool
    def message(name: str) -> ToolMessage:
        """A tool message of its own."""
        return ToolMessage(content=f"{name}: secret", tool_call_id="call-1", artifact={"n": 1})

    with _context.active(Redacting()):
        call = {"name": "report", "args": {"name": "Acme"}, "id": "call-1", "type": "tool_call"}
        out = report.invoke(call)
        assert isinstance(out, ToolMessage)
        assert out.content == "Acme: [REDACTED] plan"
        assert out.artifact == {"owner": "[REDACTED] agent", "rows": 3}
        got = message.invoke({"name": "Beta"})
        assert isinstance(got, ToolMessage) and got.content == "Beta: [REDACTED]"
        assert got.artifact == {"n": 1} and got.tool_call_id == "call-1"


def test_the_real_circuit_breaker_opens_on_a_failing_langchain_tool() -> None:
    @ironhost.protect_agent(name="searcher")
    def search_all(queries: List[str]) -> List[str]:
        out = []
        for q in queries:
            try:
                out.append(flaky.invoke({"query": q}))
            except ConnectionError:
                out.append("failed")
            except ironhost.CircuitOpen as e:
                assert isinstance(e, ToolException)
                out.append("circuit open")
        return out

    assert search_all([f"q{i}" for i in range(7)]) == ["failed"] * 5 + ["circuit open"] * 2
    assert len(calls) == 5  # the breaker spared the backend two calls
    m = search_all.ironhost.metrics()
    assert m["tool_calls"] == 7 and m["tool_errors"] == 5
