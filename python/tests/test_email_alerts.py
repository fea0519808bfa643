"""Email alerts against a real SMTP server (aiosmtpd) the test starts: an agent under `ironhost
start` crossing 90% of its budget gets one email to ops@company.com within 5 s, with the spend
and a recommended action; the same threshold never mails twice; a raised limit arms a new one;
and `ironhost serve` beside the agent (one store) sends too, with still one email a threshold."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from conftest import REPO, write_config

# Read now: the autouse fixture clears IRONHOST_* variables before each test.
BINARY = Path(os.environ.get("IRONHOST_BIN") or REPO / "target" / "release" / "ironhost")
AGENT = Path(__file__).parent / "agents" / "spend_until_stopped.py"
ADMIN_PASSWORD = "alerts-test-pw"
BUDGET = 0.03
SPEND = re.compile(r"\$\d+\.\d\d / \$\d+\.\d\d")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What the SMTP server received: (arrival time, recipients, parsed message)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: List[tuple] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.mails.append((time.time(), list(envelope.rcpt_tos), message))
        return "250 OK"

    def matching(self, pattern: str) -> List[tuple]:
        with self.lock:
            return [m for m in self.mails if re.search(pattern, str(m[2]["subject"]))]


@pytest.fixture
def inbox() -> Iterator[tuple]:
    from aiosmtpd.controller import Controller

    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def wait_for(what: str, check: Callable[[], object], timeout: float = 90.0) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def events(home: Path, agent: str, kind: str) -> List[dict]:
    """The agent's events of ``kind`` in the store (read while the processes run)."""
    db = home / "ironhost.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as c:
            rows = c.execute(
                "SELECT body FROM events WHERE agent_id = ? AND type = ? ORDER BY id", (agent, kind)
            ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [json.loads(r[0]) for r in rows]


def env_for(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC", "IRONHOST_"))}
    env.update(
        IRONHOST_HOME=str(home),
        IRONHOST_LLM_MODE="simulator",
        IRONHOST_ADMIN_PASSWORD=ADMIN_PASSWORD,
        VIRTUAL_ENV=sys.prefix,
    )
    return env


def start_agent(folder: Path, home: Path, agent: str, stop: Path, listen: str, config: Optional[Path] = None):
    assert BINARY.is_file(), f"{BINARY} is missing: build the host first (cargo build --release)"
    cmd = [str(BINARY), "start", str(AGENT), "--budget", str(BUDGET), "--agent-id", agent, "--listen", listen]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += ["--", str(stop), "100"]
    log = open(folder / f"{agent}.log", "w")
    return subprocess.Popen(cmd, cwd=folder, env=env_for(home), stdout=log, stderr=subprocess.STDOUT), log


def finish(proc, log, stop: Path) -> str:
    stop.touch()
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    return Path(log.name).read_text()


def api(base: str, method: str, path: str, body: object = None, token: str = "") -> object:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def smtp_config(port: int) -> str:
    return f'[[alerts.email]]\nto = ["ops@company.com"]\nsmtp = "smtp://127.0.0.1:{port}"\n'


def warnings_of(box: Inbox, agent: str) -> List[tuple]:
    return box.matching(rf"^\[ironhost\] {agent}: budget \d+% used")


def check_warning_mail(mail: tuple, warning: dict, limit: float) -> str:
    arrived, rcpt, message = mail
    assert rcpt == ["ops@company.com"]
    # Within 5 s of the event.
    assert arrived - warning["ts_ms"] / 1000 <= 5.0, (arrived, warning["ts_ms"])
    assert f"/ ${limit:.2f})" in str(message["subject"]), message["subject"]
    body = message.get_content()
    assert "Recommended action: Approve $" in body and " increase" in body, body
    assert SPEND.search(body), body
    assert f"Agent: {warning['agent_id']}" in body, body
    assert "Projection: $" in body, body
    return body


def test_one_email_per_budget_threshold_and_a_raised_limit_arms_a_new_one(
    tmp_path: Path, offline_home: Path, inbox: tuple
) -> None:
    box, smtp_port = inbox
    write_config(tmp_path, smtp_config(smtp_port))
    agent = "lg-mail0001"
    stop = tmp_path / "stop"
    api_port = free_port()
    proc, log = start_agent(tmp_path, offline_home, agent, stop, f"127.0.0.1:{api_port}")
    try:
        first = wait_for("the 90% email", lambda: warnings_of(box, agent))
        warning = wait_for("the budget_warning event", lambda: events(offline_home, agent, "budget_warning"))[0]
        check_warning_mail(first[0], warning, BUDGET)
        # The agent goes on past the threshold until the budget refuses calls: no second mail
        # for the same threshold, and one for the exceedance however many calls are refused.
        wait_for("refused calls", lambda: len(events(offline_home, agent, "budget_exceeded")) >= 3)
        time.sleep(2)
        assert len(warnings_of(box, agent)) == 1, [m[2]["subject"] for m in box.mails]
        assert len(box.matching(rf"^\[ironhost\] {agent}: budget exceeded")) == 1
        assert len(events(offline_home, agent, "budget_warning")) == 1

        # A raised limit is a new threshold: crossing it mails once more.
        base = f"http://127.0.0.1:{api_port}/api"
        token = api(base, "POST", "/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})["access_token"]
        api(base, "POST", "/limits", {"agent_id": agent, "limit_usd": BUDGET * 2}, token)
        both = wait_for("the email of the raised limit", lambda: len(warnings_of(box, agent)) >= 2 and warnings_of(box, agent))
        raised = events(offline_home, agent, "budget_warning")
        assert len(raised) == 2, raised
        check_warning_mail(both[1], raised[1], BUDGET * 2)
        time.sleep(1.5)
        assert len(warnings_of(box, agent)) == 2
    finally:
        out = finish(proc, log, stop)
    assert proc.returncode == 0, out
    assert "alert email budget_warning of " + agent + " sent to ops@company.com" in out, out
    with sqlite3.connect(offline_home / "ironhost.db") as c:
        sent = c.execute(
            "SELECT event_type, threshold_key, state FROM sent_alerts WHERE agent_id = ? ORDER BY claimed_ms",
            (agent,),
        ).fetchall()
    assert [(t, s) for t, _, s in sent if t == "budget_warning"] == [("budget_warning", "sent")] * 2, sent


def test_serve_and_an_agent_sharing_a_store_send_one_email_and_serve_alone_sends_it(
    tmp_path: Path, offline_home: Path, inbox: tuple
) -> None:
    box, smtp_port = inbox
    write_config(tmp_path, smtp_config(smtp_port))
    serve_port = free_port()
    serve_log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen(
        [str(BINARY), "serve", "--listen", f"127.0.0.1:{serve_port}"],
        cwd=tmp_path, env=env_for(offline_home), stdout=serve_log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for("serve to listen", lambda: "control plane:" in (tmp_path / "serve.log").read_text(), 60)
        # Both send alerts: the store's claim keeps it to one email.
        agent = "lg-mail0002"
        stop = tmp_path / "stop-a"
        proc, log = start_agent(tmp_path, offline_home, agent, stop, f"127.0.0.1:{free_port()}")
        try:
            wait_for("the 90% email", lambda: warnings_of(box, agent))
            warning = wait_for("the event", lambda: events(offline_home, agent, "budget_warning"))[0]
            wait_for("refused calls", lambda: len(events(offline_home, agent, "budget_exceeded")) >= 3)
            time.sleep(2)
        finally:
            out = finish(proc, log, stop)
        assert proc.returncode == 0, out
        mails = warnings_of(box, agent)
        assert len(mails) == 1, [m[2]["subject"] for m in box.mails]
        check_warning_mail(mails[0], warning, BUDGET)

        # An agent whose own process has no alerts configured: `ironhost serve` sends it, from
        # the events the agent stores.
        quiet = tmp_path / "quiet"
        quiet.mkdir()
        write_config(quiet, "")
        agent = "lg-mail0003"
        stop = tmp_path / "stop-b"
        proc, log = start_agent(
            quiet, offline_home, agent, stop, f"127.0.0.1:{free_port()}", config=quiet / "ironhost.toml"
        )
        try:
            mails = wait_for("the 90% email sent by serve", lambda: warnings_of(box, agent))
            warning = wait_for("the event", lambda: events(offline_home, agent, "budget_warning"))[0]
            check_warning_mail(mails[0], warning, BUDGET)
            time.sleep(1.5)
            assert len(warnings_of(box, agent)) == 1
        finally:
            out = finish(proc, log, stop)
        assert "alert email" not in out, out
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        finally:
            if serve.poll() is None:
                serve.kill()
            serve_log.close()
    assert f"alert email budget_warning of {agent} sent to ops@company.com" in (tmp_path / "serve.log").read_text()
