"""The pytest plugin (registered by the package's ``pytest11`` entry point).

Fixtures:
    mock_runtime: an entered ``MockRuntime`` (pure Python; ``mock_runtime.reply(...)`` sets
        answers; ``calls``/``findings``/``denials`` hold what happened).
    ironhost_runtime: an entered ``AgentRuntime`` on the built-in simulator, with its own
        ironhost home under the test's temporary folder, so no store or key of the machine is
        touched. Needs the native module.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from . import MockRuntime


@pytest.fixture
def mock_runtime() -> Iterator[MockRuntime]:
    with MockRuntime() as rt:
        yield rt


@pytest.fixture
def ironhost_runtime(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from .. import AgentRuntime

    monkeypatch.setenv("IRONHOST_HOME", str(tmp_path_factory.mktemp("ironhost-home")))
    monkeypatch.setenv("IRONHOST_LLM_MODE", "simulator")
    with AgentRuntime() as rt:
        yield rt
