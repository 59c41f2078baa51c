"""The audit event model: stable JSON, file names, allowed fields, the fold, the consistency check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rescue_runner import audit
from rescue_runner.audit import AuditError, AuditEvent

T = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
PLAN = [{"index": 1, "models": ["model.p.a"], "full_refresh": False, "heavy": False, "estimated_seconds": 1},
        {"index": 2, "models": ["model.p.b"], "full_refresh": False, "heavy": True, "estimated_seconds": 2}]


def ev(type_: str, seq: int, minutes: int = 0, rid: str = "r1", **fields: object) -> AuditEvent:
    at = T + timedelta(minutes=minutes)
    return AuditEvent(type_, rid, at, seq, f"{seq:08x}", dict(fields), "host:1:ab")


def trail() -> list[AuditEvent]:
    return [
        ev(audit.REQUEST_VALIDATED, 1, content_hash="sha256:c", fingerprint="sha256:f", batches=PLAN,
           pause_seconds=60.0),
        ev(audit.BATCH_SUBMITTED, 2, 1, batch=1, attempt=1, flow_run_id="run-1", url="http://x/run-1"),
        ev(audit.BATCH_RUNNING, 3, 2, batch=1, attempt=1, flow_run_id="run-1"),
        ev(audit.BATCH_FINISHED, 4, 3, batch=1, attempt=1, flow_run_id="run-1", state="completed",
           counts={"success": 1, "pass": 2}),
        ev(audit.WAITING, 5, 3, kind=audit.PAUSE, reason="pause", batch=2),
        ev(audit.BATCH_SUBMITTED, 6, 5, batch=2, attempt=1, flow_run_id="run-2"),
        ev(audit.BATCH_FINISHED, 7, 6, batch=2, attempt=1, flow_run_id="run-2", state="completed"),
        ev(audit.REQUEST_FINISHED, 8, 6, outcome=audit.SUCCEEDED, reason="2 batch(es) completed"),
    ]


def test_json_is_stable_and_round_trips() -> None:
    e = ev(audit.BATCH_FINISHED, 4, batch=1, state="completed", counts={"success": 3, "pass": 8})
    text = e.to_json()
    assert list(json.loads(text)) == ["schema", "type", "request_id", "seq", "at", "event_id", "runner",
                                      "prev", "fields"]
    assert list(json.loads(text)["fields"]) == ["batch", "counts", "state"]
    assert list(json.loads(text)["fields"]["counts"]) == ["pass", "success"]
    assert AuditEvent.from_json(text) == e and AuditEvent.from_json(text).to_json() == text
    assert e.path == "events/r1/20261123T101500.000000Z-000004-batch_finished-00000004.json"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"type": "deleted_everything"}, "unknown event type"),
    ({"request_id": "../etc"}, "bad request id"),
    ({"event_id": "zz"}, "bad event id"),
    ({"seq": 0}, "seq must be"),
    ({"at": datetime(2026, 1, 1)}, "timezone-aware"),
    ({"fields": {"env": {"HOME": "/root"}}}, "not allowed"),  # no free-form environment dumps
    ({"fields": {"reason": object()}}, "not plain JSON data"),
    ({"fields": {"reason": float("nan")}}, "finite"),
])
def test_bad_events_are_refused(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"type": audit.WAITING, "request_id": "r1", "at": T, "seq": 1,
                               "event_id": "0000abcd", "fields": {}}
    base.update(kwargs)
    with pytest.raises(AuditError, match=message):
        AuditEvent(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "[]", '{"schema": 2}', '{"schema": 1, "type": "waiting"}'])
def test_unreadable_files_are_audit_errors(text: str) -> None:
    with pytest.raises(AuditError):
        AuditEvent.from_json(text)


def test_fold_tells_the_story() -> None:
    events = trail()
    steps = [audit.derive("r1", events[:n]) for n in range(1, len(events) + 1)]
    assert [s.status for s in steps] == ["pending", "submitted", "running", "pending", "waiting", "submitted",
                                         "pending", "succeeded"]
    s = steps[-1]
    assert s.terminal and s.completed == 2 and s.next_batch is None and s.started
    assert s.batches[1].counts == {"success": 1, "pass": 2} and s.batches[1].url == "http://x/run-1"
    assert steps[4].waiting_kind == audit.PAUSE and steps[4].next_batch is not None
    assert steps[4].next_batch.index == 2 and steps[4].next_batch.heavy
    assert audit.check_consistency(events) == []


def test_fold_ignores_file_order() -> None:
    events = trail()
    assert audit.derive("r1", reversed(events)) == audit.derive("r1", events)


def test_operator_retry_reopens_with_the_next_attempt() -> None:
    events = [
        *trail()[:4],
        ev(audit.BATCH_SUBMITTED, 5, 5, batch=2, attempt=1, flow_run_id="run-2"),
        ev(audit.BATCH_FINISHED, 6, 6, batch=2, attempt=1, flow_run_id="run-2", state="crashed"),
        ev(audit.REQUEST_FINISHED, 7, 6, outcome=audit.NEEDS_OPERATOR, reason="crashed"),
        ev(audit.OPERATOR_RETRY, 8, 9, attempt=2, by="ops", reason="worker restarted"),
    ]
    s = audit.derive("r1", events)
    assert not s.terminal and s.attempt == 2 and s.batches == {}
    assert s.next_batch is not None and s.next_batch.index == 2  # batch 1 stays done
    assert audit.check_consistency(events) == []


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda es: es[:2] + es[3:], "seq is"),  # a lost event leaves a gap
    (lambda es: [*es, ev(audit.WAITING, 9, 9, kind="pause", reason="x")], "after the request finished"),
    (lambda es: [*es[:2], ev(audit.BATCH_SUBMITTED, 3, 1, batch=1, attempt=1, flow_run_id="run-1b")],
     "submitted twice"),
    (lambda es: [*es[:1], ev(audit.BATCH_SUBMITTED, 2, 1, batch=2, attempt=1, flow_run_id="run-2")],
     "before batch(es) [1] completed"),
    (lambda es: [ev(audit.BATCH_SUBMITTED, 1, batch=1, flow_run_id="x")], "before the request was validated"),
    (lambda es: [*es, es[-1]], "duplicate event ids"),
])
def test_consistency_check_finds_lost_duplicated_and_misordered_events(mutate: object, problem: str) -> None:
    events = mutate(trail())  # type: ignore[operator]
    assert any(problem in p for p in audit.check_consistency(events)), audit.check_consistency(events)


def test_a_retry_before_anything_ran_validates_the_request_afresh() -> None:
    events = [trail()[0], ev(audit.REQUEST_FINISHED, 2, 1, outcome=audit.NEEDS_OPERATOR, reason="plan drift"),
              ev(audit.OPERATOR_RETRY, 3, 2, attempt=2, by="ops", reason="the new selection is reviewed")]
    s = audit.derive("r1", events)
    assert not s.terminal and not s.validated and s.plan == () and s.attempt == 2
    assert audit.check_consistency(events) == []
