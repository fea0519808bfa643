"""`ironhost.testing`: MockRuntime, the fixtures, the assertion helpers and the generators."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import anthropic
import openai
import pytest

import ironhost
from ironhost.testing import (
    MockRuntime,
    anthropic_message_response,
    anthropic_stream_events,
    assert_budget_exceeded,
    assert_pii_detected,
    assert_policy_denied,
    find_pii,
    openai_chat_response,
    openai_stream_events,
    pii_samples,
)
from conftest import EMAIL, user

AGENTS = Path(__file__).parent / "agents"


def test_mock_answers_in_the_wire_format_and_counts_cost(mock_runtime: MockRuntime) -> None:
    mock_runtime.reply("quarter", "Revenue grew 12%.")
    client = openai.OpenAI()
    r = client.chat.completions.create(model="gpt-4o", messages=user("How was the quarter?"))
    assert r.choices[0].message.content == "Revenue grew 12%."
    m = anthropic.Anthropic().messages.create(model="claude-haiku-4-5", max_tokens=50, messages=user("hi"))
    assert m.content[0].text == "Mock answer."
    stream = client.chat.completions.create(model="echo", messages=user("say this"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "say this"
    # The streamed formats are parsed by the SDKs' own stream readers.
    with anthropic.Anthropic().messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=user("How was the quarter?")
    ) as s:
        assert "".join(s.text_stream) == "Revenue grew 12%."
    metrics = mock_runtime.get_metrics()
    assert metrics["llm_calls"] == 4
    assert set(metrics["cost_by_model"]) == {"gpt-4o", "claude-haiku-4-5", "echo"}
    # Deterministic: input tokens are len/4, priced from the table.
    first = mock_runtime.calls[0]
    assert first.cost_usd == pytest.approx((first.input_tokens * 2.5 + first.output_tokens * 10.0) / 1e6)


def test_mock_budget_and_helpers() -> None:
    with MockRuntime(budget=0.001) as rt:
        client = openai.OpenAI()
        with assert_budget_exceeded() as refused:
            for _ in range(100):
                client.chat.completions.create(model="gpt-4o", messages=user("x" * 400), max_tokens=20)
        assert refused.value is not None and refused.value.policy == "budget"
        assert rt.get_metrics()["cost_usd"] <= 0.001
        assert len(rt.calls) >= 1 and len(rt.denials) == 1

        def spend() -> None:
            client.chat.completions.create(model="gpt-4o", messages=user("x" * 400), max_tokens=20)

        assert assert_budget_exceeded(spend).code == "budget_exceeded"
        # The helper fails when nothing was refused, and lets other errors through.
        with pytest.raises(AssertionError, match="no BudgetExceeded"):
            with assert_budget_exceeded():
                pass
        with pytest.raises(KeyError):
            with assert_budget_exceeded():
                raise KeyError("other")


def test_mock_pii_modes() -> None:
    with MockRuntime() as rt:
        r = openai.OpenAI().chat.completions.create(model="echo", messages=user(f"mail {EMAIL}"))
        assert r.choices[0].message.content == "mail [EMAIL_REDACTED]"
        assert_pii_detected(rt, kind="email", count=1)
        with pytest.raises(AssertionError, match="no ssn findings"):
            assert_pii_detected(rt, kind="ssn")
    with MockRuntime(safety_mode="block") as rt:
        with assert_policy_denied(code="pii_detected", policy="pii-redact"):
            openai.OpenAI().chat.completions.create(model="echo", messages=user(f"mail {EMAIL}"))
        with pytest.raises(AssertionError, match="expected code 'budget_exceeded'"):
            with assert_policy_denied(code="budget_exceeded"):
                openai.OpenAI().chat.completions.create(model="echo", messages=user(f"mail {EMAIL}"))


def test_mock_circuit_breaker_on_tools() -> None:
    @ironhost.tool("crm")
    def crm(lead: int) -> dict:
        raise ironhost.ToolError("quota", kind="rate-limited")

    with MockRuntime(failure_threshold=3) as rt:
        for lead in range(3):
            with pytest.raises(ironhost.ToolError):
                crm(lead)
        with assert_policy_denied(code="circuit_open") as refused:
            crm(3)
        assert isinstance(refused.value, ironhost.CircuitOpen)
        rt.reset_circuit("crm")
        with pytest.raises(ironhost.ToolError):
            crm(4)
        assert rt.get_metrics()["tool_errors"] == 4


def test_mock_async_and_scripts() -> None:
    async def main() -> dict:
        async with MockRuntime() as rt:
            r = await openai.AsyncOpenAI().chat.completions.create(model="echo", messages=user("async"))
            assert r.choices[0].message.content == "async"
            agent_id = rt.start_agent(AGENTS / "three_calls.py")
            assert await asyncio.to_thread(rt.wait, agent_id, 30) == "completed"
            return rt.get_metrics(agent_id)

    m = asyncio.run(main())
    assert m["llm_calls"] == 3 and m["exit_code"] == 0 and m["name"] == "three_calls"


def test_the_real_runtime_fixture_and_helpers(ironhost_runtime: ironhost.AgentRuntime) -> None:
    sample = pii_samples("ssn", count=1, seed=3)[0]
    r = openai.OpenAI().chat.completions.create(model="echo", messages=user(sample.text))
    assert r.choices[0].message.content == sample.redacted
    assert assert_pii_detected(ironhost_runtime, kind="ssn") == 1
    assert_pii_detected(ironhost_runtime.get_metrics(), count=1)


def test_pii_samples_are_deterministic_and_found_by_pii_redact(ironhost_runtime: ironhost.AgentRuntime) -> None:
    samples = pii_samples(count=8, seed=7)
    assert samples == pii_samples(count=8, seed=7)
    assert samples != pii_samples(count=8, seed=8)
    assert [s.kind for s in samples[:4]] == ["email", "phone", "ssn", "credit_card"]
    client = openai.OpenAI()
    for s in samples:
        assert s.value in s.text and find_pii(s.text) == [(s.kind, s.value)]
        seen = client.chat.completions.create(model="echo", messages=user(s.text))
        # The real pii-redact policy finds every sample, as the mock does.
        assert seen.choices[0].message.content == s.redacted, s
    with pytest.raises(ValueError, match="unknown kind 'iban'"):
        pii_samples("iban")


def test_response_generators_parse_with_the_official_sdks() -> None:
    # Parsed the way each SDK parses a reply (its own models, from the generated bytes).
    chat = openai.types.chat.ChatCompletion.model_validate(openai_chat_response("hello", "gpt-4o"))
    assert chat.choices[0].message.content == "hello" and chat.usage.total_tokens > 0
    msg = anthropic.types.Message.model_validate(anthropic_message_response("hi there"))
    assert msg.content[0].text == "hi there"
    lines = openai_stream_events("streamed text").decode().split("\n\n")
    chunks = [json.loads(l[6:]) for l in lines if l.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "streamed text" and chunks[-1]["usage"]["completion_tokens"] > 0
    events = re.findall(r"event: (\w+)", anthropic_stream_events("abc").decode())
    assert events[0] == "message_start" and events[-1] == "message_stop"


def test_mock_runtime_needs_no_native_module(tmp_path: Path) -> None:
    # A copy of the pure-Python package with no _native: the testing kit still works.
    import shutil

    pkg = Path(ironhost.__file__).parent
    shutil.copytree(pkg, tmp_path / "ironhost", ignore=shutil.ignore_patterns("_native*", "__pycache__"))
    code = (
        "import openai, ironhost\n"
        "from ironhost.testing import MockRuntime\n"
        "with MockRuntime() as rt:\n"
        "    r = openai.OpenAI().chat.completions.create(model='echo', messages=[{'role': 'user', 'content': 'ok'}])\n"
        "print(r.choices[0].message.content, rt.get_metrics()['llm_calls'])\n"
        "try:\n"
        "    ironhost.AgentRuntime().__enter__()\n"
        "except ironhost.IronhostError as e:\n"
        "    print('native:', 'without its native module' in str(e))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["ok 1", "native: True"]
