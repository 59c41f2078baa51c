"""Running long and crashed runs: the pure decisions, the audit fold and the alert payload."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from test_reconcile import NOW, approved, events, run, view

from rescue_runner import audit, reconcile
from rescue_runner.audit import AuditEvent
from rescue_runner.config import NotificationSettings, config_from_data
from rescue_runner.notify import build_payload, for_audit_event

LONG = (3.0, 600.0)  # three times the estimate, at least ten minutes
BATCH_1_ESTIMATE = 0.0  # BATCHES in test_reconcile carry no estimate: the minimum decides


def test_a_batch_running_past_its_limit_is_announced_once() -> None:
    started = NOW - timedelta(minutes=11)
    step = reconcile.next_step(view(("v", "s1", "r1"), run=run("RUNNING", started_at=started),
                                    running_long=LONG))
    assert isinstance(step, reconcile.RecordRunningLong)
    assert step.seconds == 660 and step.estimate_seconds == BATCH_1_ESTIMATE
    # Recorded: the next pass stays quiet about it.
    trail = [*events("v", "s1", "r1"), AuditEvent(audit.BATCH_RUNNING_LONG, "r1", NOW, 4, "0000abcd", {
        "batch": 1, "attempt": 1, "flow_run_id": "run-1", "minutes": 11.0, "estimate_seconds": 0.0})]
    s = audit.derive("r1", trail)
    assert s.batches[1].running_long and s.batches[1].state == audit.B_RUNNING
    again = reconcile.next_step(reconcile.View(state=s, approved=approved(), now=NOW,
                                               run=run("RUNNING", started_at=started), running_long=LONG))
    assert isinstance(again, reconcile.Idle) and again.active
    assert audit.check_consistency(trail) == []


def test_within_the_limit_or_switched_off_nothing_is_said() -> None:
    recent = run("RUNNING", started_at=NOW - timedelta(minutes=9))
    assert isinstance(reconcile.next_step(view(("v", "s1", "r1"), run=recent, running_long=LONG)),
                      reconcile.Idle)
    old = run("RUNNING", started_at=NOW - timedelta(hours=5))
    assert isinstance(reconcile.next_step(view(("v", "s1", "r1"), run=old)), reconcile.Idle)


def test_a_crashed_batch_needs_an_operator_and_the_reason_names_the_run() -> None:
    step = reconcile.next_step(view(("v", "s1", "x1")))
    assert isinstance(step, reconcile.Finish) and step.outcome == audit.NEEDS_OPERATOR
    assert "flow run run-1" in step.reason and "rescue close" in step.reason


def test_the_running_long_alert_names_batch_run_and_estimate() -> None:
    trail = events("v", "s1", "r1")
    fields = {"batch": 1, "attempt": 1, "flow_run_id": "run-1", "minutes": 42.5, "estimate_seconds": 600.0}
    state = audit.derive("r1", trail)
    note = for_audit_event(NotificationSettings(), audit.BATCH_RUNNING_LONG, fields, state, NOW)
    assert note is not None and note.kind == "running_long" and note.flow_run_id == "run-1"
    text = build_payload(note)["text"]
    assert "running long" in text and "42.5 min" in text and "estimate 10.0 min" in text and "run-1" in text
    off = NotificationSettings(on=("failed",))
    assert for_audit_event(off, audit.BATCH_RUNNING_LONG, fields, state, NOW) is not None  # notify() filters
    assert "running_long" in NotificationSettings().on


def test_liveness_settings_from_rescue_yaml() -> None:
    from pathlib import Path

    cfg = config_from_data(Path("."), {"liveness": {"heartbeat_seconds": 60, "missed_heartbeats": 2.5}})
    assert cfg.liveness.crash_after_seconds == 150
    assert config_from_data(Path("."), {}).liveness.crash_after_seconds == 90


def test_a_failed_batch_reason_names_dbt_message_rebuilt_and_skipped(tmp_path: Path) -> None:
    import json

    from rescue_runner.executors import summary_detail
    from rescue_runner.reconcile import failure_reason

    cfg = config_from_data(tmp_path, {"prefect": {"run_results_storage_path": "runs"}})
    (tmp_path / "runs" / "run-9").mkdir(parents=True)
    secret_url = "https://ci:hunter22@git.example.com/repo.git"
    (tmp_path / "runs" / "run-9" / "summary.json").write_text(json.dumps({
        "failed": [{"unique_id": "test.p.not_null_x", "status": "fail",
                    "message": f"Got 3 results, configured to fail if != 0 ({secret_url})" + " x" * 400},
                   {"unique_id": "test.p.unique_x", "status": "fail", "message": "Got 1 result"}],
        "rebuilt": ["model.p.int_orders"], "skipped": ["model.p.mart_a", "model.p.mart_b"]}))
    detail = summary_detail(cfg, "run-9")
    assert detail["error"].startswith("test.p.not_null_x fail: Got 3 results")
    assert "hunter22" not in detail["error"] and len(detail["error"]) < 400
    assert detail["error"].endswith("(and 1 more failing node(s))")
    rec = audit.BatchRecord(1, 1, audit.B_FAILED, flow_run_id="run-9", url="http://prefect/runs/flow-run/run-9",
                            error=detail["error"], rebuilt=detail["rebuilt"], skipped=detail["skipped"])
    reason = failure_reason(rec)
    assert "1 model(s) rebuilt (int_orders), 2 downstream node(s) skipped (mart_a, mart_b)" in reason
    assert reason.endswith("flow run http://prefect/runs/flow-run/run-9")
    assert summary_detail(cfg, "no-such-run") == {"rebuilt": (), "skipped": ()}
