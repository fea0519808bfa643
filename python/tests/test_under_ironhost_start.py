"""Under `ironhost start` an agent gets the same API: the decorator and the context manager run
under the host's agent and its settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

BINARY = REPO / "target" / "release" / "ironhost"


def test_the_sdk_runs_under_the_hosts_agent(tmp_path: Path) -> None:
    assert BINARY.is_file(), f"{BINARY} is missing: build the host first (cargo build --release)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC"))}
    env["VIRTUAL_ENV"] = sys.prefix
    out = subprocess.run(
        [str(BINARY), "start", str(Path(__file__).parent / "agents" / "sdk_under_start.py"), "--budget", "7", "--no-api"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    host_id = lines["agent_id"]
    assert lines["decorator"] == "mail [EMAIL_REDACTED]"
    assert lines["async"] == "async"
    # No agent of their own: the runtime's block and the functions are the host's agent, with
    # the operator's budget, and all three calls count there.
    assert lines["runtime agent"] == "None"
    assert lines["host agent"] == f"{host_id} {host_id} 3 7.0"
    assert lines["function figures"] == "True 3"
    # An agent under `ironhost start` cannot open one of its own (a way around the operator's
    # budget): start_agent and the native open_agent refuse, naming why.
    assert lines["start_agent"] == "refused"
    assert lines["open_agent"] == "refused"
