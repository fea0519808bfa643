"""Secret rotation: an operator rotates a key through the control plane while the agent runs.

The bundle (bundles/secret-rotation) has secrets-inject grant the agent SERP_API_KEY, the key of
the search service its tool calls. The runtime serves the control plane (``api=True``); the
example signs in as the admin and creates, rotates and deletes the secret through the REST API
while the agent keeps running:

- the agent's ``os.environ`` follows each change without a restart;
- its next tool call uses the new key (a call in flight finishes with the one it started with);
- the audit trail names every change and the agent each one reached, and holds no value.

It runs in a throwaway ironhost home with a fresh master key, so the admin password below is
the one the store is created with.
"""

import json
import os
import secrets
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai

import ironhost

BUNDLE = Path(__file__).resolve().parent / "bundles" / "secret-rotation"
ADMIN_PASSWORD = "rotation-example-admin"


class ControlPlane:
    """Just enough of the REST API: sign in, then JSON calls with the access token."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.base = url.rstrip("/")
        self.token = ""
        _, tokens = self.call("POST", "/api/auth/login", {"username": username, "password": password})
        self.token = tokens["access_token"]

    def call(self, method: str, path: str, body: object = None) -> tuple:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as failed:
            raise RuntimeError(f"{method} {path}: {failed.code} {failed.read().decode()}") from None


def eventually(check, timeout: float = 10.0) -> bool:
    """Whether check() becomes true within the timeout (the host applies changes in the
    background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def applied(admin: ControlPlane, value: object, changes: int) -> bool:
    """Whether the agent's SERP_API_KEY is ``value`` (None: gone) and the host has noted in the
    audit trail that it applied each of the ``changes`` made so far."""

    def done() -> bool:
        _, trail = admin.call("GET", "/api/secrets/audit?secret_name=SERP_API_KEY")
        rotations = [e for e in trail if e["action"] == "rotate"]
        return os.environ.get("SERP_API_KEY") == value and len(rotations) >= changes

    return eventually(done)


@ironhost.tool("web_search")
def web_search(query: str) -> dict:
    """The search service: it needs the key the agent was given."""
    key = os.environ.get("SERP_API_KEY")
    if not key:
        raise PermissionError("the search service refused the request: no SERP_API_KEY")
    return {"query": query, "results": 3, "key_used": key}


def research(company: str) -> str:
    """One step of the agent: a search, then a summary by the model."""
    found = web_search(f"{company} annual revenue")
    openai.OpenAI().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"Summarise {found['results']} results about {company}"}],
    )
    return found["key_used"]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="ironhost-rotation-") as home:
        os.environ["IRONHOST_HOME"] = home
        os.environ["IRONHOST_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        os.environ["IRONHOST_MASTER_KEY"] = secrets.token_hex(32)
        os.environ.pop("SERP_API_KEY", None)
        with ironhost.AgentRuntime(bundle=BUNDLE, api=True, listen="127.0.0.1:0", name="researcher") as rt:
            print(f"agent {rt.agent_id}; control plane at {rt.dashboard}")
            admin = ControlPlane(rt.dashboard, "admin", ADMIN_PASSWORD)
            # No secret yet: the agent started without the variable.
            assert "SERP_API_KEY" not in os.environ

            status, view = admin.call("PUT", "/api/secrets/SERP_API_KEY", {"value": "serp-2026-q3"})
            print(f"created  SERP_API_KEY: {status}, shown as {view['value']}")
            assert status == 201 and view["masked"]
            assert applied(admin, "serp-2026-q3", 1), "the new secret never reached the agent"
            first = research("Acme")
            print(f"research with key {first}")

            status, _ = admin.call("PUT", "/api/secrets/SERP_API_KEY", {"value": "serp-2026-q4"})
            print(f"rotated  SERP_API_KEY: {status}")
            assert status == 200
            assert applied(admin, "serp-2026-q4", 2), "the rotation never reached the agent"
            second = research("Acme")
            print(f"research with key {second}")
            assert (first, second) == ("serp-2026-q3", "serp-2026-q4")

            status, _ = admin.call("DELETE", "/api/secrets/SERP_API_KEY")
            print(f"deleted  SERP_API_KEY: {status}")
            assert status == 204
            assert applied(admin, None, 3), "the deleted secret stayed in the agent"
            try:
                research("Acme")
                raise AssertionError("the search should fail without its key")
            except PermissionError as refused:
                print(f"research without a key: {refused}")

            _, trail = admin.call("GET", "/api/secrets/audit?secret_name=SERP_API_KEY")
            print("audit trail:")
            for entry in sorted(trail, key=lambda e: e["id"]):
                print(f"  {entry['action']:<7} by {entry['actor']:<8} {entry['detail'] or ''}")
            # Each change by the admin, each followed by the host applying it to this agent (reads
            # by policies are audited too, as `policy-read`, and left aside here).
            actions = [e["action"] for e in sorted(trail, key=lambda e: e["id"]) if e["action"] != "policy-read"]
            assert actions == ["create", "rotate", "update", "rotate", "delete", "rotate"], actions
            assert all(rt.agent_id in e["detail"] for e in trail if e["action"] == "rotate")
            assert "serp-2026" not in json.dumps(trail), "a secret's value reached the audit trail"

            m = rt.get_metrics()
            print(f"tool calls {m['tool_calls']}, LLM calls {m['llm_calls']}, cost ${m['cost_usd']:.6f}")
            assert m["tool_calls"] == 3 and m["llm_calls"] == 2
