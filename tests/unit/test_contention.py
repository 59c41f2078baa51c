"""contention.decide: table-driven cases in tests/data/contention/*.json, plus properties."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rescue_runner.config import PrefectSettings
from rescue_runner.contention import ContentionSnapshot, DueRun, decide

CASES_DIR = Path(__file__).resolve().parents[1] / "data" / "contention"
CASES = sorted(CASES_DIR.glob("*.json"))


def test_cases_exist() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_decision_case(case_path: Path) -> None:
    case = json.loads(case_path.read_text())
    settings = PrefectSettings(**case.get("settings", {}))
    snapshot = ContentionSnapshot.from_dict(case["snapshot"])
    decision = decide(snapshot, heavy=case["heavy"], settings=settings,
                      now=datetime.fromisoformat(case["now"]))
    expect = case["expect"]
    assert decision.go is expect["go"], decision.reasons
    assert decision.summary == expect["summary"]
    for reason in expect.get("reasons_include", []):
        assert reason in decision.reasons, decision.reasons


def test_snapshot_round_trips_through_dict() -> None:
    case = json.loads((CASES_DIR / "four_due_runs_wait.json").read_text())
    snapshot = ContentionSnapshot.from_dict(case["snapshot"])
    assert ContentionSnapshot.from_dict(snapshot.to_dict()) == snapshot


NOW = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


@st.composite
def snapshots(draw: st.DrawFn) -> ContentionSnapshot:
    limit = draw(st.one_of(st.none(), st.integers(1, 8)))
    busy = draw(st.integers(0, 10))
    due = tuple(
        DueRun(f"r{i}", draw(st.sampled_from([None, "nightly", "hourly"])),
               NOW + timedelta(minutes=draw(st.integers(-20, 30))))
        for i in range(draw(st.integers(0, 5)))
    )
    return ContentionSnapshot("rescue", "dbt", limit, draw(st.one_of(st.none(), st.integers(1, 8))),
                              busy, busy + draw(st.integers(0, 3)), due, draw(st.integers(0, 2)), NOW)


@given(snapshots(), st.booleans(), st.integers(0, 3), st.integers(0, 3))
def test_properties(snapshot: ContentionSnapshot, heavy: bool, reserve: int, extra: int) -> None:
    settings = PrefectSettings(reserve_slots=reserve, heavy_extra_slots=extra)
    d = decide(snapshot, heavy=heavy, settings=settings, now=NOW)
    assert d.summary.startswith("go: " if d.go else "wait: ")
    assert d.free_slots is not None and d.needed_slots is not None
    if d.go:
        assert d.free_slots >= d.needed_slots and snapshot.workers_online > 0
    # More load never turns a wait into a go; a heavy batch never goes where a light one waits.
    busier = dataclasses.replace(snapshot, queue_busy=snapshot.queue_busy + 1,
                                 pool_busy=snapshot.pool_busy + 1)
    assert not (decide(busier, heavy=heavy, settings=settings, now=NOW).go and not d.go)
    if heavy:
        assert not (d.go and not decide(snapshot, heavy=False, settings=settings, now=NOW).go)
