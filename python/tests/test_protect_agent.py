"""`@ironhost.protect_agent` with the official SDKs against the built-in simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anthropic
import openai
import pytest

import ironhost
from conftest import EMAIL, store_rows, user, write_config


def test_zero_config_sync_openai_goes_through_the_chain(offline_home: Path) -> None:
    @ironhost.protect_agent
    def ask(question: str) -> str:
        reply = openai.OpenAI().chat.completions.create(model="echo", messages=user(question))
        return reply.choices[0].message.content

    # The echo model answers with what reached the provider: the email never left.
    answer = ask(f"Write to {EMAIL} please")
    assert answer == "Write to [EMAIL_REDACTED] please"
    m = ask.ironhost.metrics()
    assert m["budget_usd"] == 100.0
    assert m["llm_calls"] == 1 and m["pii_findings"] == 1
    assert m["state"] == "completed" and m["run"] == 1
    agent_id = ask.ironhost.agent_id
    assert agent_id.startswith("as-")
    ask.ironhost.close()
    # The real store saw the call, the finding and how the run ended.
    assert store_rows(offline_home, "SELECT model, kind FROM calls WHERE agent_id = ?", agent_id) == [
        ("echo", "llm")
    ]
    assert store_rows(offline_home, "SELECT pii_type, action FROM pii_audit WHERE agent_id = ?", agent_id) == [
        ("email", "redacted")
    ]
    assert store_rows(offline_home, "SELECT name, state, budget_usd FROM agents WHERE id = ?", agent_id) == [
        ("ask", "completed", 100.0)
    ]


def test_async_anthropic_is_redacted_both_ways(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        '[[simulator.replies]]\nwhen = "Who owns the account"\n'
        f'text = "Ask Jane: {EMAIL}, she owns it."\n',
    )

    @ironhost.protect_agent(budget=5.0)
    async def owner() -> tuple:
        client = anthropic.AsyncAnthropic()
        out = await client.messages.create(
            model="echo", max_tokens=100, messages=user(f"Mail {EMAIL}")
        )
        back = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=100, messages=user("Who owns the account?")
        )
        return out.content[0].text, back.content[0].text

    sent, received = asyncio.run(owner())
    assert sent == "Mail [EMAIL_REDACTED]"
    assert received == "Ask Jane: [EMAIL_REDACTED], she owns it."
    m = owner.ironhost.metrics()
    assert m["llm_calls"] == 2 and m["pii_findings"] == 2 and m["budget_usd"] == 5.0
    assert m["cost_usd"] > 0


WEATHER_RULES = """
[[simulator.replies]]
when = "weather in Paris"
tool = "get_weather"
arguments = { city = "Paris" }

[[simulator.replies]]
when = "weather in Paris"
text = "Sunny, 18 C in Paris."
"""


def test_the_simulator_calls_tools_as_the_official_sdks_expect(tmp_path: Path) -> None:
    import json

    write_config(tmp_path, WEATHER_RULES)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    openai_tools = [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]
    anthropic_tools = [{"name": "get_weather", "description": "Weather for a city", "input_schema": schema}]

    @ironhost.protect_agent(budget=5.0)
    def ask() -> dict:
        client = openai.OpenAI()
        messages = user("What is the weather in Paris?")
        first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=openai_tools)
        call = first.choices[0].message.tool_calls[0]
        # The tool's result goes back: the answer is text.
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18 C"},
        ]
        final = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=openai_tools)
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=user("weather in Paris"), tools=openai_tools, stream=True
            )
        )
        deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        with anthropic.Anthropic().messages.stream(
            model="claude-haiku-4-5", max_tokens=200, messages=user("weather in Paris?"), tools=anthropic_tools
        ) as stream:
            claude = stream.get_final_message()
        return {
            "openai": (first.choices[0].finish_reason, call.function.name, json.loads(call.function.arguments)),
            "answer": (final.choices[0].finish_reason, final.choices[0].message.content),
            "streamed": (
                "".join(d.function.name or "" for d in deltas),
                json.loads("".join(d.function.arguments or "" for d in deltas)),
                [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
            ),
            "anthropic": (claude.stop_reason, claude.content[0].type, claude.content[0].name, claude.content[0].input),
        }

    got = ask()
    assert got["openai"] == ("tool_calls", "get_weather", {"city": "Paris"})
    assert got["answer"] == ("stop", "Sunny, 18 C in Paris.")
    assert got["streamed"] == ("get_weather", {"city": "Paris"}, ["tool_calls"])
    assert got["anthropic"] == ("tool_use", "tool_use", "get_weather", {"city": "Paris"})
    assert ask.ironhost.metrics()["llm_calls"] == 4


def test_streaming_is_redacted_in_flight() -> None:
    @ironhost.protect_agent
    def stream() -> str:
        chunks = openai.OpenAI().chat.completions.create(
            model="echo", messages=user(f"Call {EMAIL}"), stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert stream() == "Call [EMAIL_REDACTED]"


def test_sync_budget_stops_the_function_with_budget_exceeded() -> None:
    calls = []

    @ironhost.protect_agent(budget=0.05)
    def spend() -> None:
        client = openai.OpenAI()
        for _ in range(200):
            client.chat.completions.create(
                model="gpt-4o", messages=user("Summarise the quarter " * 200), max_tokens=500
            )
            calls.append(1)

    with pytest.raises(ironhost.BudgetExceeded) as caught:
        spend()
    assert caught.value.code.startswith("budget") and caught.value.policy == "budget"
    m = spend.ironhost.metrics()
    # It ran until the next call could overrun the budget, and spent no more than it.
    assert len(calls) >= 1 and m["cost_usd"] <= 0.05
    assert m["denied"] == 1 and m["state"] == "failed"
    # The budget covers every call of the function: the next call is refused at once.
    calls.clear()
    with pytest.raises(ironhost.BudgetExceeded):
        spend()
    assert calls == []


def test_async_budget_stops_the_coroutine() -> None:
    @ironhost.protect_agent(budget=0.02)
    async def spend() -> int:
        client = openai.AsyncOpenAI()
        done = 0
        while True:
            await client.chat.completions.create(
                model="gpt-4o", messages=user("Draft the plan " * 200), max_tokens=500
            )
            done += 1

    with pytest.raises(ironhost.BudgetExceeded):
        asyncio.run(spend())
    assert spend.ironhost.metrics()["cost_usd"] <= 0.02


def test_block_mode_refuses_and_pii_off_lets_it_through() -> None:
    @ironhost.protect_agent(safety_mode="block")
    def strict() -> None:
        openai.OpenAI().chat.completions.create(model="echo", messages=user(f"Mail {EMAIL}"))

    with pytest.raises(ironhost.PolicyDenied) as caught:
        strict()
    assert caught.value.policy == "pii-redact"
    assert not isinstance(caught.value, ironhost.BudgetExceeded)

    @ironhost.protect_agent(pii_detection=False)
    def lax() -> str:
        r = openai.OpenAI().chat.completions.create(model="echo", messages=user(f"Mail {EMAIL}"))
        return r.choices[0].message.content

    assert lax() == f"Mail {EMAIL}"
    assert lax.ironhost.metrics()["pii_findings"] == 0


def test_the_functions_own_exception_propagates_unchanged() -> None:
    boom = KeyError("lead 7")

    @ironhost.protect_agent
    def fails() -> None:
        openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=user("hi"))
        raise boom

    with pytest.raises(KeyError) as caught:
        fails()
    assert caught.value is boom
    assert fails.ironhost.metrics()["state"] == "failed"


def test_tools_inside_are_governed_and_current_sees_the_agent() -> None:
    @ironhost.tool("lookup")
    def lookup(company: str) -> dict:
        return {"company": company, "employees": 42}

    @ironhost.protect_agent(name="crm-sync")
    def run() -> tuple:
        found = lookup("Acme")
        return found, ironhost.current()

    found, status = run()
    assert found == {"company": "Acme", "employees": 42}
    assert status.name == "crm-sync" and status.tool_calls == 1 and status.state == "running"
    assert run.ironhost.agent_id == status.agent_id
    # Outside any agent a tool is a plain call and current() says why it has nothing to show.
    assert lookup("Beta") == {"company": "Beta", "employees": 42}
    assert run.ironhost.metrics()["tool_calls"] == 1
    with pytest.raises(RuntimeError, match="no ironhost agent is active"):
        ironhost.current()


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="budget"):
        ironhost.protect_agent(budget="50")
    with pytest.raises(ValueError, match="budget must be more than 0"):
        ironhost.protect_agent(budget=0)
    with pytest.raises(ValueError, match="finite"):
        ironhost.protect_agent(budget=float("inf"))
    with pytest.raises(ValueError, match="safety_mode"):
        ironhost.protect_agent(safety_mode="shred")
    with pytest.raises(ValueError, match="pii_detection"):
        ironhost.protect_agent(pii_detection=False, safety_mode="block")

    @ironhost.protect_agent(bundle=tmp_path / "missing")
    def nowhere() -> None:
        pass

    with pytest.raises(ironhost.ConfigurationError, match="bundle"):
        nowhere()

    with pytest.raises(TypeError, match="generator"):

        @ironhost.protect_agent
        def gen():  # type: ignore[no-untyped-def]
            yield 1


def test_anthropic_denials_are_not_wrapped_or_retried() -> None:
    @ironhost.protect_agent(safety_mode="block")
    def strict() -> None:
        anthropic.Anthropic().messages.create(
            model="claude-haiku-4-5", max_tokens=20, messages=user(f"Mail {EMAIL}")
        )

    # The anthropic SDK turns unknown transport errors into a retried APIConnectionError; a
    # refusal must reach the agent as itself, once.
    with pytest.raises(ironhost.PolicyDenied) as caught:
        strict()
    assert caught.value.code == "pii_detected"
    assert strict.ironhost.metrics()["denied"] == 1


def test_configured_upstreams_go_through_the_chain_for_their_agent_only(tmp_path: Path) -> None:
    # An OpenAI-compatible endpoint behind a proxy: an upstream of the config, its calls are
    # governed like api.openai.com's (here answered by the simulator, redacted on the way).
    write_config(
        tmp_path,
        '[[llm.upstreams]]\nname = "proxy"\nbase-url = "https://llm.proxy.internal/v1"\n'
        'format = "openai"\nkey-secret = "PROXY_API_KEY"\n',
    )

    @ironhost.protect_agent(name="proxied")
    def ask() -> str:
        client = openai.OpenAI(base_url="https://llm.proxy.internal/v1", max_retries=0)
        return client.chat.completions.create(model="echo", messages=user(f"to {EMAIL}")).choices[0].message.content

    assert ask() == "to [EMAIL_REDACTED]"
    assert ask.ironhost.metrics()["llm_calls"] == 1
    # The table is the agent's own: another agent's requests to that host are not taken.
    from ironhost import _context, _intercept

    chat = "/v1/chat/completions"
    (tmp_path / "plain.toml").write_text("", encoding="utf-8")
    with ironhost.AgentRuntime(config=tmp_path / "plain.toml", name="plain"):
        assert _intercept.lookup("https", "llm.proxy.internal", None, chat) is None
        assert _intercept.lookup("https", "api.openai.com", 443, chat) is not None
    with _context.active(ask.ironhost._agent):
        found = _intercept.lookup("https", "llm.proxy.internal", None, chat)
        assert found is not None and found.agent is ask.ironhost._agent
        assert found.upstream == "proxy"
        # Another path on that host, or another port, is not the upstream's.
        assert _intercept.lookup("https", "llm.proxy.internal", None, "/v2/chat/completions") is None
        assert _intercept.lookup("https", "llm.proxy.internal", 8443, chat) is None
    ask.ironhost.close()


def test_a_cancelled_async_call_is_recorded_as_stopped_not_failed(offline_home: Path) -> None:
    started = asyncio.Event()

    @ironhost.protect_agent(name="cancelled")
    async def waits() -> None:
        started.set()
        await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(waits())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert waits.ironhost.metrics()["state"] == "stopped"
    agent_id = waits.ironhost.agent_id
    waits.ironhost.close()
    assert store_rows(offline_home, "SELECT state FROM agents WHERE id = ?", agent_id) == [("stopped",)]


def test_overlapping_calls_keep_the_agent_running_and_each_is_a_run(offline_home: Path) -> None:
    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        @ironhost.protect_agent(name="overlap")
        async def step(slow: bool) -> str:
            if slow:
                started.set()
                await release.wait()
                return "done"
            raise ValueError("lead 3 is malformed")

        slow = asyncio.create_task(step(True))
        await started.wait()
        with pytest.raises(ValueError):
            await step(False)
        # One call failed, the other still runs: so does the agent.
        assert step.ironhost.metrics()["state"] == "running"
        release.set()
        assert await slow == "done"
        m = step.ironhost.metrics()
        assert (m["state"], m["run"]) == ("completed", 2)
        agent_id = step.ironhost.agent_id
        step.ironhost.close()
        # Each call is a run with its own end; the agent's is the last run's.
        assert store_rows(offline_home, "SELECT run, state, exit_code FROM agent_runs WHERE agent_id = ? ORDER BY run", agent_id) == [
            (1, "completed", 0),
            (2, "failed", 1),
        ]
        assert store_rows(offline_home, "SELECT state FROM agents WHERE id = ?", agent_id) == [("completed",)]

    asyncio.run(main())


def test_close_waits_for_a_call_under_way_and_loses_nothing(offline_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    monkeypatch.setenv("IRONHOST_SIMULATOR_LATENCY_MS", "600")
    started = threading.Event()
    answers: list = []

    @ironhost.protect_agent(name="closing")
    def ask() -> None:
        started.set()
        reply = openai.OpenAI(max_retries=0).chat.completions.create(model="echo", messages=user("slow one"))
        answers.append(reply.choices[0].message.content)
        time.sleep(1.0)  # more work after the call: the run is still under way at the close

    worker = threading.Thread(target=ask)
    worker.start()
    assert started.wait(30)
    agent = ask.ironhost._agent
    for _ in range(1500):  # until the call is with the simulator (600 ms)
        if agent.calls_under_way:
            break
        time.sleep(0.01)
    assert agent.calls_under_way == 1
    agent_id = ask.ironhost.agent_id
    ask.ironhost.close()
    worker.join(30)
    # The call finished, and the store has it although the agent closed while it ran.
    assert answers == ["slow one"]
    assert store_rows(offline_home, "SELECT model FROM calls WHERE agent_id = ?", agent_id) == [("echo",)]
    # The run was still under way when the agent closed: it can make no more calls, and the
    # store says stopped rather than running.
    assert store_rows(offline_home, "SELECT state FROM agents WHERE id = ?", agent_id) == [("stopped",)]


def test_ctrl_c_ends_the_wait_of_close_and_the_agent_is_closed_all_the_same(
    offline_home: Path, monkeypatch: pytest.MonkeyPatch, python_sigint: None
) -> None:
    import os
    import signal
    import threading
    import time

    # The reply is 60 s away: close() would wait its 30 s for it but for the Ctrl-C.
    monkeypatch.setenv("IRONHOST_SIMULATOR_LATENCY_MS", "60000")
    outcome: list = []

    @ironhost.protect_agent(name="interrupted close")
    def ask() -> None:
        try:
            reply = openai.OpenAI(max_retries=0).chat.completions.create(model="echo", messages=user("never"))
            outcome.append(reply.choices[0].message.content)
        except BaseException as exc:  # noqa: BLE001 - what the call ended with is the point
            outcome.append(exc)

    worker = threading.Thread(target=ask)
    worker.start()
    agent = None
    for _ in range(3000):  # until the call is with the simulator
        agent = ask.ironhost._agent
        if agent is not None and agent.calls_under_way:
            break
        time.sleep(0.01)
    assert agent is not None and agent.calls_under_way == 1
    agent_id = ask.ironhost.agent_id
    # Ctrl-C in the main thread once close() is waiting for the call.
    ctrl_c = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    ctrl_c.start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ask.ironhost.close()
    # Ended by the Ctrl-C, not by the 30 s the close gives calls under way (after which Python
    # would raise the same pending KeyboardInterrupt).
    assert time.monotonic() - began < 20
    ctrl_c.join()
    # The close was finished before the interrupt was raised: calls are refused, and the run
    # still under way is recorded as stopped.
    assert agent.closed
    assert store_rows(offline_home, "SELECT state FROM agents WHERE id = ?", agent_id) == [("stopped",)]
    # The call under way is stopped rather than left waiting on a host that is shut down.
    worker.join(30)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt), outcome
