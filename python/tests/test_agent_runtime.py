"""`ironhost.AgentRuntime` as a context manager (sync and async), and the agents it starts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import anthropic
import openai
import pytest

import ironhost
from conftest import EMAIL, store_rows, user

AGENTS = Path(__file__).parent / "agents"


def eventually(check, timeout: float = 15.0) -> bool:
    """Whether ``check()`` becomes true within ``timeout`` seconds (polled)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


def made_calls(rt: ironhost.AgentRuntime, agent_id: str, n: int) -> bool:
    """Whether the started script has made ``n`` LLM calls (waiting for it)."""
    return eventually(lambda: rt.get_metrics(agent_id)["llm_calls"] >= n)


ADMIN_PASSWORD = "runtime-test-pw"


def api(base: str, method: str, path: str, body: object = None, token: str = "") -> object:
    """A JSON call to the control plane at ``base`` (``.../api``); an error status raises
    ``urllib.error.HTTPError``."""
    import json
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def admin_token(base: str) -> str:
    reply = api(base, "POST", "/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
    return reply["access_token"]  # type: ignore[index]


def test_the_block_is_an_agent_and_is_cleaned_up(offline_home: Path) -> None:
    with ironhost.AgentRuntime(budget=2.0, name="research") as rt:
        r = openai.OpenAI().chat.completions.create(model="echo", messages=user(f"to {EMAIL}"))
        assert r.choices[0].message.content == "to [EMAIL_REDACTED]"
        m = rt.get_metrics()
        assert m["agent_id"] == rt.agent_id and m["name"] == "research"
        assert m["budget_usd"] == 2.0 and m["llm_calls"] == 1 and m["pii_by_kind"] == {"email": 1}
        main_id = rt.agent_id
    # Closed on exit: everything is in the store, and the run is recorded as completed.
    assert store_rows(offline_home, "SELECT state, exit_code FROM agent_runs WHERE agent_id = ?", main_id) == [
        ("completed", 0)
    ]
    with pytest.raises(RuntimeError, match="not open"):
        rt.start_agent(AGENTS / "three_calls.py")
    with pytest.raises(RuntimeError, match="entered once"):
        with rt:
            pass


def test_an_exception_in_the_block_propagates_unchanged(offline_home: Path) -> None:
    boom = ValueError("bad lead")
    with pytest.raises(ValueError) as caught:
        with ironhost.AgentRuntime() as rt:
            openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=user("hi"))
            raise boom
    assert caught.value is boom
    assert store_rows(offline_home, "SELECT state FROM agent_runs WHERE agent_id = ?", rt.agent_id) == [
        ("failed",)
    ]


def test_async_with_and_the_budget() -> None:
    async def main() -> dict:
        async with ironhost.AgentRuntime(budget=0.03) as rt:
            client = anthropic.AsyncAnthropic()
            with pytest.raises(ironhost.BudgetExceeded):
                for _ in range(500):
                    await client.messages.create(
                        model="claude-sonnet-4-5", max_tokens=1000, messages=user("Plan " * 300)
                    )
            return rt.get_metrics()

    m = asyncio.run(main())
    assert m["llm_calls"] >= 2 and m["denied"] == 1
    assert 0 < m["cost_usd"] <= 0.03


def test_async_exception_propagates_and_tasks_inherit_the_agent() -> None:
    async def main() -> None:
        async with ironhost.AgentRuntime() as rt:
            client = openai.AsyncOpenAI()

            async def one(i: int) -> str:
                r = await client.chat.completions.create(model="echo", messages=user(f"task {i}"))
                return r.choices[0].message.content

            answers = await asyncio.gather(*(one(i) for i in range(4)))
            assert answers == [f"task {i}" for i in range(4)]
            assert rt.get_metrics()["llm_calls"] == 4
            raise LookupError("done")

    with pytest.raises(LookupError, match="done"):
        asyncio.run(main())


def test_start_agent_runs_a_script_and_reports_its_metrics(offline_home: Path) -> None:
    with ironhost.AgentRuntime() as rt:
        agent_id = rt.start_agent(AGENTS / "three_calls.py")
        assert rt.wait(agent_id, timeout=30) == "completed"
        m = rt.get_metrics(agent_id)
        assert m["agent_id"] == agent_id and m["name"] == "three_calls"
        assert m["llm_calls"] == 3 and m["exit_code"] == 0 and m["state"] == "completed"
        assert set(m["cost_by_model"]) == {"gpt-4o-mini", "claude-haiku-4-5"}
        # The script's calls are its own, not the block's.
        assert rt.get_metrics()["llm_calls"] == 0
        assert rt.agents == [agent_id]
        assert rt.stop_agent(agent_id) == "completed"
    assert store_rows(offline_home, "SELECT progress_done, progress_total FROM agents WHERE id = ?", agent_id) == [
        (3, 3)
    ]


def test_stop_agent_stops_a_running_script(offline_home: Path) -> None:
    with ironhost.AgentRuntime() as rt:
        agent_id = rt.start_agent(AGENTS / "forever.py")
        assert made_calls(rt, agent_id, 3)
        assert rt.stop_agent(agent_id, timeout=10) == "stopped"
        calls = rt.get_metrics(agent_id)["llm_calls"]
        assert rt.get_metrics(agent_id)["exit_code"] == 130
    # No call after the stop, and the store shows it stopped.
    assert store_rows(offline_home, "SELECT count(*) FROM calls WHERE agent_id = ?", agent_id) == [(calls,)]
    assert store_rows(offline_home, "SELECT state FROM agents WHERE id = ?", agent_id) == [("stopped",)]


def test_leaving_the_block_stops_scripts_still_running() -> None:
    with ironhost.AgentRuntime(stop_timeout=10) as rt:
        agent_id = rt.start_agent(AGENTS / "forever.py")
    assert rt.wait(agent_id, timeout=0) == "stopped"


def test_bad_arguments_say_what_is_wrong(tmp_path: Path) -> None:
    with ironhost.AgentRuntime() as rt:
        with pytest.raises(FileNotFoundError, match="nope.py"):
            rt.start_agent(tmp_path / "nope.py")
        with pytest.raises(KeyError, match="no agent 'x-1'"):
            rt.get_metrics("x-1")
        with pytest.raises(ValueError, match="own agent"):
            rt.stop_agent(rt.agent_id)
    with pytest.raises(ValueError, match="listen needs api=True"):
        ironhost.AgentRuntime(listen="127.0.0.1:0")
    with pytest.raises(ironhost.ConfigurationError, match="api.listen"):
        with ironhost.AgentRuntime(api=True, listen="not-an-address"):
            pass


def test_api_true_serves_the_control_plane() -> None:
    import urllib.request

    with ironhost.AgentRuntime(api=True, listen="127.0.0.1:0") as rt:
        assert rt.dashboard is not None and rt.dashboard.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(rt.dashboard.rstrip("/") + "/api/health", timeout=5) as r:
            assert r.status == 200


def test_a_plain_thread_belongs_to_the_one_active_agent_and_is_refused_when_ambiguous() -> None:
    import contextvars
    import threading

    results: dict = {}

    def call(key: str) -> None:
        try:
            reply = openai.OpenAI(max_retries=0).chat.completions.create(model="echo", messages=user(f"to {EMAIL}"))
            results[key] = reply.choices[0].message.content
        except ironhost.IronhostError as refused:
            results[key] = str(refused)

    def in_thread(fn, key: str) -> None:
        t = threading.Thread(target=fn, args=(key,))
        t.start()
        t.join(30)

    with ironhost.AgentRuntime(name="solo") as rt:
        # One agent active: a thread started without its context still belongs to it.
        in_thread(call, "one agent")
        assert results["one agent"] == "to [EMAIL_REDACTED]"
        assert rt.get_metrics()["llm_calls"] == 1
        # A script's agent is active in its thread too: whose the plain thread is cannot be
        # told, so its call is refused rather than sent out ungoverned.
        script = rt.start_agent(AGENTS / "forever.py")
        assert made_calls(rt, script, 1)
        in_thread(call, "ambiguous")
        assert "several ironhost agents are active" in results["ambiguous"]
        # With the context copied, the thread is the block's again.
        ctx = contextvars.copy_context()
        in_thread(lambda key: ctx.run(call, key), "copied")
        assert results["copied"] == "to [EMAIL_REDACTED]"
        assert rt.get_metrics()["llm_calls"] == 2


def test_the_control_plane_stops_and_rotates_in_process_agents(offline_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONHOST_ADMIN_PASSWORD", ADMIN_PASSWORD)
    # Removed again when the test ends (the secret is injected into this process).
    monkeypatch.setenv("SERP_API_KEY", "")
    monkeypatch.delenv("SERP_API_KEY")
    bundle = offline_home.parent / "bundle"
    bundle.mkdir()
    (bundle / "bundle.toml").write_text(
        '[bundle]\nname = "inject"\n\n[[policy]]\ncomponent = "builtin:secrets-inject"\n'
        'capabilities = ["config", "secrets", "events"]\n[policy.config]\n'
        'inject = [{ env = "SERP_API_KEY" }]\n',
        encoding="utf-8",
    )

    with ironhost.AgentRuntime(bundle=bundle, api=True, listen="127.0.0.1:0") as rt:
        base = rt.dashboard.rstrip("/") + "/api"
        token = admin_token(base)
        script = rt.start_agent(AGENTS / "forever.py")
        # A secret set through the API reaches os.environ (both agents follow their stores;
        # the script's has its own, told by SIGUSR1 to this process).
        api(base, "PUT", "/secrets/SERP_API_KEY", {"value": "serp-v1"}, token)
        assert eventually(lambda: os.environ.get("SERP_API_KEY") == "serp-v1")
        rotated = lambda: {
            e["detail"].split(":")[0].removeprefix("agent ")
            for e in api(base, "GET", "/secrets/audit?secret_name=SERP_API_KEY", token=token)
            if e["action"] == "rotate"
        }
        assert eventually(lambda: {rt.agent_id, script} <= rotated()), rotated()
        # Stopping the script's agent through the API stops it, and this program goes on.
        api(base, "POST", f"/agents/{script}/stop", token=token)
        assert rt.wait(script, timeout=10) == "stopped"
        assert rt.get_metrics()["state"] == "running"


def test_a_started_script_runs_as_main_and_the_programs_main_stays(offline_home: Path) -> None:
    import sys

    program_main = sys.modules["__main__"]
    with ironhost.AgentRuntime() as rt:
        looping = rt.start_agent(AGENTS / "forever.py")
        assert made_calls(rt, looping, 1)
        # While a script runs, the program's other threads still see their own __main__.
        assert sys.modules["__main__"] is program_main
        guarded = rt.start_agent(AGENTS / "as_main.py")
        assert rt.wait(guarded, timeout=30) == "completed"
        # Models and dataclasses in a script find their names through its own __main__.
        typed = rt.start_agent(AGENTS / "typed_models.py")
        assert rt.wait(typed, timeout=30) == "completed", rt.get_metrics(typed)
    assert store_rows(offline_home, "SELECT progress_done, progress_unit FROM agents WHERE id = ?", guarded) == [
        (1, "main blocks")
    ]


def test_the_control_plane_never_sigterms_a_python_program_for_its_sdk_agent(
    offline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys
    import time

    monkeypatch.setenv("IRONHOST_ADMIN_PASSWORD", ADMIN_PASSWORD)
    # Another Python program, with an SDK agent in the middle of a call of its function.
    program = subprocess.Popen(
        [sys.executable, "-c", (
            "import time, openai, ironhost\n"
            "@ironhost.protect_agent(name='elsewhere')\n"
            "def work():\n"
            "    client = openai.OpenAI()\n"
            "    ask = lambda: client.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}])\n"
            "    ask()\n"
            "    print('ready', work.ironhost.agent_id, flush=True)\n"
            "    for _ in range(600):\n"
            "        time.sleep(0.1)\n"
            "        try:\n"
            "            ask()\n"
            "        except KeyboardInterrupt:\n"
            "            print('stopped', flush=True)\n"
            "            break\n"
            "    time.sleep(120)\n"
            "work()\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = program.stdout.readline().split()
        assert line[:1] == ["ready"], line
        elsewhere = line[1]
        with ironhost.AgentRuntime(api=True, listen="127.0.0.1:0") as rt:
            base = rt.dashboard.rstrip("/") + "/api"
            token = admin_token(base)
            # The stop reaches the other program through the store: its agent is stopped
            # by flag (its next call raises KeyboardInterrupt), never by a signal.
            stopping = api(base, "POST", f"/agents/{elsewhere}/stop", token=token)
            assert stopping["state"] == "stopping"
            assert stopping["processes"] == 1
            assert program.stdout.readline().strip() == "stopped"
        # The program goes on: SIGTERM would have ended it.
        time.sleep(0.5)
        assert program.poll() is None
    finally:
        program.kill()
        program.wait(30)


def test_an_sdk_agent_follows_a_policy_change_made_by_another_process(
    offline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys
    import time

    monkeypatch.setenv("IRONHOST_ADMIN_PASSWORD", ADMIN_PASSWORD)
    # A Python program whose SDK agent sends an email address to the echo model in a loop.
    program = subprocess.Popen(
        [sys.executable, "-c", (
            "import time, openai, ironhost\n"
            "@ironhost.protect_agent(name='follower')\n"
            "def work():\n"
            "    client = openai.OpenAI()\n"
            f"    for _ in range(600):\n"
            f"        r = client.chat.completions.create(model='echo', messages=[{{'role': 'user', 'content': 'to {EMAIL}'}}])\n"
            "        print('call', r.choices[0].message.content, flush=True)\n"
            "        time.sleep(0.05)\n"
            "work()\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert program.stdout.readline().strip() == "call to [EMAIL_REDACTED]"
        # Another process (this one) changes pii-redact's config through its control plane:
        # a new revision of the bundle in the shared store.
        with ironhost.AgentRuntime(api=True, listen="127.0.0.1:0") as rt:
            base = rt.dashboard.rstrip("/") + "/api"
            token = admin_token(base)
            changed = api(base, "PUT", "/policies/pii-redact/config", {"mode": "warn"}, token=token)
            revision = changed["revision"]  # type: ignore[index]
            asked = time.monotonic()
            # The program's agent swaps to it within a second or so: its calls go out as written.
            seen = []
            while time.monotonic() - asked < 15:
                line = program.stdout.readline().strip()
                seen.append(line)
                if line == f"call to {EMAIL}":
                    break
            assert seen[-1] == f"call to {EMAIL}", seen[-5:]
            followed = time.monotonic() - asked
            history = api(base, "GET", "/policies/revisions", token=token)
            assert history["revisions"][0]["revision"] == revision  # type: ignore[index]
            assert history["revisions"][0]["action"] == "configured"  # type: ignore[index]
        assert followed < 10, followed
    finally:
        program.kill()
        program.wait(30)


def test_ctrl_c_while_leaving_the_block_still_closes_and_is_raised(
    offline_home: Path, monkeypatch: pytest.MonkeyPatch, python_sigint: None
) -> None:
    import contextvars
    import signal
    import threading
    import time

    # A call from a worker thread of the block is 60 s from its reply when the block ends.
    monkeypatch.setenv("IRONHOST_SIMULATOR_LATENCY_MS", "60000")
    outcome: list = []

    def call() -> None:
        try:
            openai.OpenAI(max_retries=0).chat.completions.create(model="echo", messages=user("late"))
            outcome.append("answered")
        except BaseException as exc:  # noqa: BLE001 - what the call ended with is the point
            outcome.append(exc)

    with pytest.raises(KeyboardInterrupt):
        with ironhost.AgentRuntime(name="interrupted exit") as rt:
            worker = threading.Thread(target=contextvars.copy_context().run, args=(call,))
            worker.start()
            agent = rt._main
            assert eventually(lambda: agent.calls_under_way == 1)
            # Ctrl-C once leaving the block waits for that call.
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            began = time.monotonic()
    # Ended by the Ctrl-C, not by the 30 s the close gives calls under way.
    assert time.monotonic() - began < 20
    # The runtime was closed before the interrupt went on: the block's run is recorded, its
    # agent refuses calls, and the call under way was stopped rather than left waiting.
    assert agent.closed
    assert store_rows(offline_home, "SELECT state FROM agent_runs WHERE agent_id = ?", rt.agent_id) == [
        ("completed",)
    ]
    worker.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt), outcome
