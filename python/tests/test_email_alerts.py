"""Email alerts against a real SMTP server (aiosmtpd) the test starts: an agent under `ironhost
start` crossing 90% of its budget gets one email to ops@company.com within 5 s, with the spend
and a recommended action; the same threshold never mails twice; a raised limit arms a new one;
and `ironhost serve` beside the agent (one store) sends too, with still one email a threshold;
over STARTTLS and smtps:// with a private CA's certificate the mail goes out encrypted, and a
login never goes out in clear."""

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


def check_warning_mail(mail: tuple, warning: dict, limit: float, to: str = "ops@company.com") -> str:
    arrived, rcpt, message = mail[:3]
    assert rcpt == [to]
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


class Auths:
    """What an SMTP server's AUTH saw: (login, password, over TLS)."""

    def __init__(self, password: bytes) -> None:
        self.password = password
        self.seen: List[tuple] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        tls = server.transport.get_extra_info("ssl_object") is not None
        self.seen.append((auth_data.login, auth_data.password, tls))
        return AuthResult(success=auth_data.password == self.password, auth_data=auth_data)


class TlsInbox(Inbox):
    """An inbox that also notes whether each message came over TLS, and who had logged in."""

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        tls = server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login if session.authenticated else None
        with self.lock:
            self.mails.append((time.time(), list(envelope.rcpt_tos), message, tls, login))
        return "250 OK"


# The smtps relay requires AUTH without aiosmtpd knowing its socket is TLS (Auths checks).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_over_starttls_and_smtps_with_a_private_ca_and_a_login_never_in_clear(
    tmp_path: Path, offline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four relays for one budget warning: STARTTLS with a login (the certificate from a private
    CA named in `ca-file`), smtps:// (TLS from the first byte), STARTTLS with a certificate the
    host has no reason to trust, and a relay that offers AUTH but no STARTTLS. The first two get
    the email over TLS; the third gets none (the certificate is refused); the fourth never sees
    the password."""
    import ssl

    import trustme
    from aiosmtpd.controller import Controller

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    (tmp_path / "relay-ca.pem").write_bytes(ca.cert_pem.bytes())
    stranger = trustme.CA()
    stranger_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    stranger.issue_cert("127.0.0.1").configure_cert(stranger_ctx)

    password = b"relay-pw-7"
    boxes, auths, controllers, ports = [], [], [], []
    for kind in ("starttls", "smtps", "stranger", "plain"):
        box, auth, port = TlsInbox(), Auths(password), free_port()
        options: dict = {"hostname": "127.0.0.1", "port": port, "authenticator": auth}
        if kind == "starttls":
            options.update(tls_context=server_ctx, require_starttls=True, auth_require_tls=True, auth_required=True)
        elif kind == "smtps":
            # TLS from the first byte (aiosmtpd does not count it as TLS for AUTH by itself;
            # Auths checks the connection).
            options.update(ssl_context=server_ctx, auth_required=True, auth_require_tls=False)
        elif kind == "stranger":
            options.update(tls_context=stranger_ctx, require_starttls=True, auth_require_tls=True)
        else:
            # Offers AUTH in clear: a client that would log in without TLS would do it here.
            options.update(auth_require_tls=False)
        controller = Controller(box, **options)
        controller.start()
        boxes.append(box)
        auths.append(auth)
        controllers.append(controller)
        ports.append(port)
    config = ""
    for name, scheme, port, ca_file in (
        ("starttls", "smtp", ports[0], True),
        ("smtps", "smtps", ports[1], True),
        ("stranger", "smtp", ports[2], False),
        ("plain", "smtp", ports[3], False),
    ):
        config += (
            f'[[alerts.email]]\nto = ["{name}@company.com"]\nsmtp = "{scheme}://127.0.0.1:{port}"\n'
            'username = "ops"\npassword-env = "RELAY_PASSWORD"\nevents = ["budget_warning"]\n'
            + ('ca-file = "relay-ca.pem"\n' if ca_file else "")
        )
    write_config(tmp_path, config)
    monkeypatch.setenv("RELAY_PASSWORD", password.decode())
    agent = "lg-mailtls1"
    stop = tmp_path / "stop"
    try:
        proc, log = start_agent(tmp_path, offline_home, agent, stop, f"127.0.0.1:{free_port()}")
        try:
            for box in boxes[:2]:
                wait_for("the 90% email over TLS", lambda: warnings_of(box, agent))
            warning = wait_for("the event", lambda: events(offline_home, agent, "budget_warning"))[0]
            # The refused deliveries are retried, then given up with a line in the log.
            wait_for(
                "the two refused deliveries in the log",
                lambda: (tmp_path / f"{agent}.log").read_text().count("not delivered") >= 2,
                60,
            )
        finally:
            out = finish(proc, log, stop)
    finally:
        for controller in controllers:
            controller.stop()
    assert proc.returncode == 0, out
    for name, box in zip(("starttls", "smtps"), boxes[:2]):
        mails = warnings_of(box, agent)
        assert len(mails) == 1, (name, [m[2]["subject"] for m in box.mails])
        arrived, rcpt, message, tls, login = mails[0]
        assert tls, f"{name}: the message came in clear"
        assert login == b"ops", (name, login)
        check_warning_mail(mails[0], warning, BUDGET, to=f"{name}@company.com")
    assert all(tls for _, _, tls in auths[0].seen + auths[1].seen)
    # The stranger's certificate is refused before anything is said: no login, no mail.
    assert boxes[2].mails == [] and auths[2].seen == []
    assert re.search(r"alert email budget_warning of \S+ to stranger@company\.com via \S+ not delivered: .*certificate.*ca-file", out, re.I), out
    # No STARTTLS, no login: the password never went out in clear.
    assert boxes[3].mails == [] and auths[3].seen == [], auths[3].seen
    assert re.search(r"alert email budget_warning of \S+ to plain@company\.com via \S+ not delivered: .*STARTTLS.*only over TLS", out, re.I), out
    assert password.decode() not in out
