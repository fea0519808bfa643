"""Every example in examples/python runs offline on the simulator and checks its own results
(each ends with asserts); a failing assert fails the example's process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

EXAMPLES = REPO / "examples" / "python"


#: CrewAI pins openai<3: its examples run with the Python of their own virtualenv, which
#: scripts/test-python.sh makes (ironhost, crewai) and names in CREWAI_PYTHON.
CREWAI_PYTHON = os.environ.get("CREWAI_PYTHON")


def run_example(python: str, script: str, home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONHOST_")}
    env["IRONHOST_HOME"] = str(home)
    out = subprocess.run(
        [python, script], cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, f"{script} failed:\n{out.stdout}\n{out.stderr}"
    assert out.stdout.strip(), f"{script} printed nothing"


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs_and_checks_itself(script: str, tmp_path: Path) -> None:
    run_example(sys.executable, script, tmp_path / "home")


@pytest.mark.parametrize("script", sorted(f"crewai/{p.name}" for p in EXAMPLES.glob("crewai/*.py")))
def test_crewai_example_runs_and_checks_itself(script: str, tmp_path: Path) -> None:
    assert CREWAI_PYTHON, "CREWAI_PYTHON is not set: run scripts/test-python.sh, which makes the CrewAI virtualenv"
    run_example(CREWAI_PYTHON, script, tmp_path / "home")


def test_there_are_examples_of_each_kind() -> None:
    names = [p.stem for p in EXAMPLES.glob("*.py")]
    assert len([n for n in names if n.startswith("langchain_")]) >= 5
    assert len([n for n in names if n.startswith("goal_loop")]) >= 2
    assert len(list(EXAMPLES.glob("crewai/*.py"))) >= 3
