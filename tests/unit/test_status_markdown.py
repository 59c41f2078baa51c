"""`rescue status --format markdown`: golden files for running, waiting, failed and stale-on-main.

States are folded from real audit events (the same fold `rescue status` uses).
``RR_UPDATE_GOLDEN=1`` rewrites the files after a deliberate change to the layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rescue_runner import audit
from rescue_runner.audit import AuditEvent
from rescue_runner.operate import _batches
from rescue_runner.reporting.runs import status_markdown
from rescue_runner.results import RequestStatus, StatusReport

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "status"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
BATCHES = [
    {"index": 1, "models": ["model.lakehouse.int_orders", "model.lakehouse.int_customer_orders"],
     "full_refresh": False, "heavy": False, "estimated_seconds": 120.0},
    {"index": 2, "models": ["model.lakehouse.mart_revenue"], "full_refresh": True, "heavy": True,
     "estimated_seconds": 1900.0},
]


def _events(rid: str, *steps: tuple[str, Mapping[str, Any]]) -> list[AuditEvent]:
    validated = ("request_validated", {"path": f"rescues/{rid}.yaml", "content_hash": "sha256:c",
                                       "fingerprint": "sha256:f", "commit": "abc", "batches": BATCHES,
                                       "pause_seconds": 300.0, "requested_by": "ana", "ticket": "DATA-1"})
    return [AuditEvent(type=t, request_id=rid, at=T0 + timedelta(minutes=10 * i), seq=i + 1,
                       event_id=f"{i + 1:08x}", fields=dict(f))
            for i, (t, f) in enumerate([validated, *steps])]


def _report(trails: Sequence[list[AuditEvent]], **kw: Any) -> StatusReport:
    out = []
    for events in trails:
        s = audit.derive(events[0].request_id, events)
        out.append(RequestStatus(s.request_id, s.status, s.reason, _batches(s), s))
    return StatusReport(out, as_of=NOW, **kw)


def _submitted(batch: int, run: str) -> tuple[str, Mapping[str, Any]]:
    return ("batch_submitted", {"batch": batch, "attempt": 1, "flow_run_id": run, "mode": "server",
                                "url": f"http://127.0.0.1:4200/runs/flow-run/{run}"})


def _finished(batch: int, run: str, state: str, failed: Sequence[str] = ()) -> tuple[str, Mapping[str, Any]]:
    return ("batch_finished", {"batch": batch, "attempt": 1, "flow_run_id": run, "state": state,
                               "failed_nodes": list(failed), "counts": {}})


RUNNING = _events("2026-12-07-running", _submitted(1, "11111111-aaaa"), ("batch_running", {"batch": 1}))
WAIT_WINDOW = _events("2026-12-07-heavy-refresh", ("waiting", {
    "kind": "window_closed", "reason": "window closed: opens 2026-12-07 21:00 UTC", "batch": 1,
    "until": "2026-12-07T21:00:00Z"}))
WAIT_PAUSE = _events("2026-12-07-paused", _submitted(1, "22222222-bbbb"),
                     _finished(1, "22222222-bbbb", "completed"),
                     ("waiting", {"kind": "pause", "batch": 2, "until": "2026-12-07T09:35:00Z",
                                  "reason": "pause between batches: batch 2 not before 09:35:00 UTC"}))
WAIT_QUEUE = _events("2026-12-07-queued", ("waiting", {
    "kind": "queue_busy", "batch": 1, "reason": "wait: 4/5 slots busy, nightly_marts due in 12 min"}))
FAILED = _events("2026-12-07-failed", _submitted(1, "33333333-cccc"),
                 _finished(1, "33333333-cccc", "failed",
                           ["model.lakehouse.int_orders", "test.lakehouse.unique_int_orders_order_id"]),
                 ("request_finished", {"outcome": "failed", "reason": "batch 1 failed: dbt build failed",
                                       "batches_completed": 0, "batches_total": 2}))
DONE = _events("2026-12-06-done", _submitted(1, "44444444-dddd"), _finished(1, "44444444-dddd", "completed"),
               _submitted(2, "55555555-eeee"), _finished(2, "55555555-eeee", "completed"),
               ("request_finished", {"outcome": "succeeded", "reason": "all batches completed",
                                     "batches_completed": 2, "batches_total": 2}))
STALE = [{"model": "model.lakehouse.int_orders", "commit": "9f8e7d6c5b4a39281706", "changed_at": "2026-12-06",
          "downstream": 3, "hint": "rescue int_orders+ (`rescue new`)"},
         {"model": "model.lakehouse.stg_events"}]

CASES = {
    "running": _report([RUNNING, DONE]),
    "waiting": _report([WAIT_WINDOW, WAIT_PAUSE, WAIT_QUEUE]),
    "failed": _report([FAILED]),
    "stale_on_main": _report([], stale_on_main=STALE),
    "everything": _report([RUNNING, WAIT_PAUSE, FAILED, DONE], stale_on_main=STALE,
                          problems=["2026-12-07-x: seq is [1, 3], not 1..2"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_status_markdown_golden(name: str) -> None:
    got = status_markdown(CASES[name])
    golden = GOLDEN / f"{name}.md"
    if os.environ.get("RR_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")


def test_markdown_says_what_each_state_needs() -> None:
    assert "| `2026-12-07-running` | 1 of 2 | [2026-12-07-running-batch-1](http://127.0.0.1:4200/runs/" \
           "flow-run/11111111-aaaa) | 2026-12-07 09:10 UTC | batch 2 after a 5m00s pause |" \
           in status_markdown(CASES["running"])
    waiting = status_markdown(CASES["waiting"])
    assert "| 2026-12-07 21:00 UTC |" in waiting and "| 2026-12-07 09:35 UTC |" in waiting
    assert "when the queue has room" in waiting and "2 of 2 (1 model(s), full refresh, heavy)" in waiting
    failed = status_markdown(CASES["failed"])
    assert "**failed**" in failed and "`int_orders`, `unique_int_orders_order_id`" in failed
    assert "rescue retry" in failed
    stale = status_markdown(CASES["stale_on_main"])
    assert "### Stale on main" in stale
    assert "| `model.lakehouse.int_orders` | `9f8e7d6c5b4a` 2026-12-06 | 3 |" in stale


def test_untrusted_reason_cannot_break_the_table_or_mention() -> None:
    evil = _events("2026-12-07-evil", ("waiting", {"kind": "queue_busy", "batch": 1,
                                                   "reason": "a|b <img src=x> @team\nnext"}))
    md = status_markdown(_report([evil]))
    assert "<img" not in md and "a\\|b" in md and "@\u200bteam" in md and "\nnext" not in md
