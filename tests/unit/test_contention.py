"""contention.decide over the forecast: table-driven cases in tests/data/contention/*.json
(snapshot + schedule + history + batch -> decision), plus properties."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rescue_runner.config import ForecastSettings, PrefectSettings
from rescue_runner.contention import ActiveRun, Ask, ContentionSnapshot, DueRun, decide
from rescue_runner.forecast import Occupant

CASES_DIR = Path(__file__).resolve().parents[1] / "data" / "contention"
CASES = sorted(CASES_DIR.glob("*.json"))


def _settings(data: dict[str, Any]) -> PrefectSettings:
    data = dict(data)
    forecast = ForecastSettings(**data.pop("forecast", {}))
    return PrefectSettings(**data, forecast=forecast)


def _ask(b: dict[str, Any]) -> Ask:
    end = datetime.fromisoformat(b["window_end"]) if b.get("window_end") else None
    return Ask(b.get("estimated_seconds", 0.0), b.get("heavy", False), end, b.get("timezone"))


def test_cases_exist() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_decision_case(case_path: Path) -> None:
    case = json.loads(case_path.read_text())
    snapshot = ContentionSnapshot.from_dict(case["snapshot"])
    decision = decide(snapshot, _ask(case["batch"]), settings=_settings(case.get("settings", {})),
                      now=datetime.fromisoformat(case["now"]))
    expect = case["expect"]
    assert decision.go is expect["go"], decision.reasons
    assert decision.summary == expect["summary"]
    if not decision.go:
        assert decision.binding and decision.binding in decision.summary
        want = expect.get("next_fit")
        assert (decision.next_fit.isoformat() if decision.next_fit else None) == want
    assert decision.split == expect.get("split")
    # The requirement never exceeds what the queue can offer.
    assert decision.needed_slots is not None
    assert decision.needed_slots <= (snapshot.queue_limit or 5)


def test_snapshot_round_trips_through_dict() -> None:
    for name in ("pool_limit_tighter_other_queue_due_wait.json", "heavy_45min_runs_due_at_31_wait.json"):
        case = json.loads((CASES_DIR / name).read_text())
        snapshot = ContentionSnapshot.from_dict(case["snapshot"])
        assert ContentionSnapshot.from_dict(snapshot.to_dict()) == snapshot


NOW = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


def test_a_slot_promised_to_a_waiting_rescue_counts() -> None:
    """A light batch may not take the slots a rescue ahead of it was told it would get."""
    empty = ContentionSnapshot("rescue", "dbt", 2, None, 0, 0, (), 1, NOW)
    settings = PrefectSettings(reserve_slots=0)
    promised = Occupant("outage_recovery", NOW + timedelta(minutes=5), NOW + timedelta(minutes=40), 2,
                        "reserved")
    assert decide(empty, Ask(600), settings=settings, now=NOW).go
    d = decide(empty, Ask(600, reserved=(promised,)), settings=settings, now=NOW)
    assert not d.go and "outage_recovery waiting ahead" in d.summary
    assert d.next_fit == promised.end
    # One that ends before the promised slot starts may go first (backfill).
    assert decide(empty, Ask(120, reserved=(promised,)), settings=_settings(
        {"reserve_slots": 0, "forecast": {"margin_minutes": 1}}), now=NOW).go


def test_an_overdue_run_keeps_its_slot_for_another_margin() -> None:
    snap = ContentionSnapshot("rescue", "dbt", 1, None, 1, 1, (), 1, NOW, running=(
        ActiveRun("slow", "nightly", NOW - timedelta(hours=2)),), typical_seconds={"nightly": 600})
    d = decide(snap, Ask(60), settings=PrefectSettings(), now=NOW)
    assert not d.go and d.next_fit == NOW + timedelta(minutes=2)


@st.composite
def snapshots(draw: st.DrawFn) -> ContentionSnapshot:
    limit = draw(st.one_of(st.none(), st.integers(1, 8)))
    due = tuple(
        DueRun(f"r{i}", draw(st.sampled_from([None, "nightly", "hourly"])),
               NOW + timedelta(minutes=draw(st.integers(-20, 90))),
               work_queue=draw(st.sampled_from([None, "etl"])))
        for i in range(draw(st.integers(0, 6)))
    )
    running = tuple(
        ActiveRun(f"b{i}", draw(st.sampled_from([None, "nightly", "hourly"])),
                  NOW - timedelta(minutes=draw(st.integers(0, 60))),
                  work_queue=draw(st.sampled_from([None, "etl"])))
        for i in range(draw(st.integers(0, 6)))
    )
    in_queue = sum(1 for r in running if r.work_queue is None)
    return ContentionSnapshot("rescue", "dbt", limit, draw(st.one_of(st.none(), st.integers(1, 8))),
                              in_queue, len(running), due, draw(st.integers(0, 2)), NOW, running=running,
                              typical_seconds={"nightly": draw(st.integers(60, 5400)), "hourly": 600})


@given(snapshots(), st.booleans(), st.integers(0, 3), st.integers(0, 3), st.integers(0, 7200),
       st.one_of(st.none(), st.integers(0, 600)))
def test_properties(snapshot: ContentionSnapshot, heavy: bool, reserve: int, extra: int, est: int,
                    window_minutes: int | None) -> None:
    settings = PrefectSettings(reserve_slots=reserve, heavy_extra_slots=extra)
    end = NOW + timedelta(minutes=window_minutes) if window_minutes is not None else None
    ask = Ask(est, heavy, end)
    d = decide(snapshot, ask, settings=settings, now=NOW)
    assert d.summary.startswith("go: " if d.go else "wait: ")
    limit = snapshot.queue_limit or settings.queue_concurrency
    assert d.needed_slots is not None and 1 <= d.needed_slots <= limit  # never an impossible requirement
    if d.go:
        assert snapshot.workers_online > 0 and d.free_slots is not None and d.free_slots >= d.needed_slots
        assert end is None or (d.expected_end is not None and d.expected_end <= end)
    elif d.next_fit is not None:
        assert d.next_fit > NOW or d.binding
        assert end is None or (d.expected_end is not None and d.expected_end <= end)
    # More load never turns a wait into a go; a heavy batch never goes where a light one waits.
    busier = dataclasses.replace(snapshot, queue_busy=snapshot.queue_busy + 1,
                                 pool_busy=snapshot.pool_busy + 1,
                                 running=(*snapshot.running, ActiveRun("extra", "nightly", NOW)))
    assert not (decide(busier, ask, settings=settings, now=NOW).go and not d.go)
    if heavy:
        assert not (d.go and not decide(snapshot, dataclasses.replace(ask, heavy=False),
                                        settings=settings, now=NOW).go)


def test_expected_starts_follow_the_window_the_pauses_and_the_queue() -> None:
    from datetime import time

    from rescue_runner.contention import describe_starts, expected_starts
    from rescue_runner.model import DailyWindow, Window

    night = Window(daily=DailyWindow(time(1, 0), time(5, 0)), timezone="Europe/Berlin")
    settings = PrefectSettings()
    # 22:00 Berlin: the window opens at 01:00 Berlin (00:00 UTC); batch 2 after batch 1 and a 10 min pause.
    starts = expected_starts([(1800, False), (600, True)], pause_seconds=600, now=NOW, settings=settings,
                             window=night)
    assert [(s.start, s.end) for s in starts] == [
        (datetime(2026, 11, 24, 0, 0, tzinfo=UTC), datetime(2026, 11, 24, 0, 30, tzinfo=UTC)),
        (datetime(2026, 11, 24, 0, 40, tzinfo=UTC), datetime(2026, 11, 24, 0, 50, tzinfo=UTC))]
    assert describe_starts(starts, "Europe/Berlin", NOW)[0] == (
        "batch 1: expected start 2026-11-24 01:00 Europe/Berlin (2026-11-24 00:00 UTC), "
        "end 2026-11-24 01:30 Europe/Berlin (2026-11-24 00:30 UTC)")
    # With the queue: four nightly runs due at 00:00 UTC for an hour leave no room for the heavy batch.
    busy = ContentionSnapshot.from_dict({
        "queue_limit": 5, "taken_at": NOW.isoformat(), "typical_seconds": {"nightly": 3600},
        "due": [{"name": f"n{i}", "deployment": "nightly", "expected_start": "2026-11-24T00:00:00+00:00"}
                for i in range(3)]})
    starts = expected_starts([(1800, False), (600, True)], pause_seconds=600, now=NOW, settings=settings,
                             window=night, snapshot=busy)
    assert starts[0].start == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    assert starts[1].start == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    assert starts[1].note == "after nightly ends"
    # A batch longer than the window never fits: said, not guessed.
    (never,) = expected_starts([(6 * 3600, False)], pause_seconds=0, now=NOW, settings=settings, window=night)
    assert never.start is None and "does not fit" in never.note
