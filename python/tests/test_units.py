"""`ironhost.unit_done` and `with ironhost.unit()`: per-unit outcomes reach the store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import ironhost
from conftest import store_rows


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"seconds": -0.5}, "seconds"),
        ({"seconds": math.nan}, "seconds"),
        ({"seconds": math.inf}, "seconds"),
        ({"seconds": "1.5"}, "seconds"),
        ({"fallback": ""}, "fallback"),
        ({"fallback": "   "}, "fallback"),
        ({"fallback": "x" * 65}, "fallback"),
        ({"fallback": 3}, "fallback"),
        ({"unit": "a\nb"}, "unit"),
        ({"ok": "yes"}, "ok"),
    ],
)
def test_unit_done_refuses_bad_arguments_naming_them(
    offline_home: Path, kwargs: dict, argument: str
) -> None:
    with ironhost.AgentRuntime() as rt:
        with pytest.raises(ValueError, match=rf"^unit_done: {argument} must"):
            ironhost.unit_done(**kwargs)
        agent_id = rt.agent_id
    assert store_rows(offline_home, "SELECT COUNT(*) FROM units WHERE agent_id = ?", agent_id) == [(0,)]


@pytest.mark.parametrize(
    "seconds, fallback, unit, argument",
    [
        (-1.0, None, None, "seconds"),
        (math.nan, None, None, "seconds"),
        (None, "", None, "fallback"),
        (None, "y" * 65, None, "fallback"),
        (None, None, "\x07", "unit"),
    ],
)
def test_the_host_checks_the_arguments_too(
    offline_home: Path, seconds: object, fallback: object, unit: object, argument: str
) -> None:
    from ironhost import _context

    with ironhost.AgentRuntime():
        native = _context.require("the test")
        with pytest.raises(ValueError, match=rf"^unit_done: {argument} must"):
            native.unit_done(True, seconds, fallback, unit)


def test_units_are_recorded_and_a_raised_exception_marks_the_unit_failed(offline_home: Path) -> None:
    with ironhost.AgentRuntime(name="leads") as rt:
        ironhost.progress(0, 5, "leads")
        ironhost.unit_done(seconds=1.25)
        ironhost.unit_done(False, seconds=0.5, unit="lead")
        with ironhost.unit() as u:
            u.fallback("cache")
        with ironhost.unit() as u:
            u.fail()
        boom = KeyError("lead L-007")
        with pytest.raises(KeyError) as caught:
            with ironhost.unit():
                raise boom
        assert caught.value is boom, "the exception propagates unchanged"
        with pytest.raises(RuntimeError, match="entered once"):
            with u:
                pass
        # The agent reads the same figures the store gives the dashboard, live.
        live = ironhost.current().metrics["units"]
        agent_id = rt.agent_id
    rows = store_rows(
        offline_home,
        "SELECT ok, seconds, fallback, unit, run FROM units WHERE agent_id = ? ORDER BY id",
        agent_id,
    )
    assert [(ok, fallback, unit) for ok, _, fallback, unit, _ in rows] == [
        (1, None, None),
        (0, None, "lead"),
        (1, "cache", None),
        (0, None, None),
        (0, None, None),
    ]
    assert rows[0][1] == 1.25 and rows[1][1] == 0.5
    # The context manager timed its units.
    assert all(s is not None and 0 <= s < 5 for _, s, _, _, _ in rows[2:])
    assert {run for *_, run in rows} == {1}
    assert (live["done"], live["ok"], live["failed"], live["fallback"], live["unit"]) == (5, 2, 3, 1, "lead")
    assert live["success_rate"] == pytest.approx(2 / 5) and live["fallback_rate"] == pytest.approx(1 / 5)
    seconds = sorted(s for _, s, _, _, _ in rows)
    # Nearest rank over the five units' seconds: p50 is the 3rd, p95 the 5th.
    assert (live["seconds"]["p50"], live["seconds"]["p95"]) == (seconds[2], seconds[4])
    assert store_rows(
        offline_home, "SELECT COUNT(*) FROM events WHERE agent_id = ? AND type = 'unit_done'", agent_id
    ) == [(5,)]


def test_outside_an_agent_a_unit_says_it_needs_one() -> None:
    with pytest.raises(RuntimeError, match=r"ironhost\.unit\(\)"):
        with ironhost.unit():
            pass
    with pytest.raises(RuntimeError, match=r"ironhost\.unit_done\(\)"):
        ironhost.unit_done()
    with pytest.raises(ValueError, match="unit_done: fallback must"):
        ironhost.unit().fallback("")


def test_the_testing_kit_records_units() -> None:
    from ironhost.testing import MockRuntime

    with MockRuntime() as rt:
        with ironhost.unit("leads") as u:
            u.fallback("placeholder")
        figures = ironhost.current().metrics["units"]
    assert [(ok, fallback, unit) for _, ok, _, fallback, unit in rt.units] == [
        (True, "placeholder", "leads")
    ]
    assert (figures["done"], figures["ok"], figures["fallback"], figures["unit"]) == (1, 1, 1, "leads")
    assert figures["seconds"]["p50"] is not None
