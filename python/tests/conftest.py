"""Every test runs offline on the built-in simulator, in its own folder and ironhost home, so
no setting, store or key from the machine leaks in."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

EMAIL = "jane.doe@example.org"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def offline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in list(os.environ):
        if var.startswith("IRONHOST_"):
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    monkeypatch.setenv("IRONHOST_HOME", str(home))
    monkeypatch.setenv("IRONHOST_LLM_MODE", "simulator")
    monkeypatch.chdir(tmp_path)
    yield home


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt during the test, even when the runner was started with
    SIGINT ignored (a background job is), a disposition Python keeps instead of its handler."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def write_config(folder: Path, text: str) -> None:
    (folder / "ironhost.toml").write_text(text, encoding="utf-8")


def store_rows(home: Path, sql: str, *args: object) -> List[Tuple]:
    """Rows from the agent store (read after the agent closed, so everything is written)."""
    with sqlite3.connect(home / "ironhost.db") as db:
        return db.execute(sql, args).fetchall()


def user(text: str) -> list:
    return [{"role": "user", "content": text}]
