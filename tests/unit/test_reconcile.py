"""reconcile.next_step, case by case: the state machine's rules as a table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from rescue_runner import audit, reconcile
from rescue_runner.audit import AuditEvent
from rescue_runner.contention import Decision
from rescue_runner.model import DailyWindow, PlannedBatch, Request, Window
from rescue_runner.reconcile import NOT_ASKED, Approved, Earlier, Revalidation, RunView, View

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BATCHES = (PlannedBatch(1, ("model.p.a",)), PlannedBatch(2, ("model.p.b",), heavy=True))
OK = Revalidation(ok=True, fingerprint="sha256:f", batches=BATCHES, pause_seconds=600.0)
GO = Decision(True, ("go: 0/5 slots busy",))
WAIT = Decision(False, ("wait: 5/5 slots busy",))
NIGHT = Window(daily=DailyWindow(time(1, 0), time(5, 0)), timezone="UTC")
PAST = Window(not_before=NOW - timedelta(hours=3), not_after=NOW - timedelta(hours=1), timezone="UTC")


def request(window: Window | None = None) -> Request:
    return Request(id="r1", path="rescues/r1.yaml", version=1, reason="a long enough reason",
                   requested_by="ana", select=("x",), window=window)


def approved(window: Window | None = None, expired: str | None = None) -> Approved:
    return Approved("r1", "rescues/r1.yaml", b"x", "sha256:c", 0, "abc", request(window), expired)


def events(*steps: str) -> list[AuditEvent]:
    """A trail from short names: v (validated), s1 (batch 1 submitted), r1 (running), c1/f1/x1 (completed,
    failed, crashed), done."""
    out: list[AuditEvent] = []
    for i, step in enumerate(steps, start=1):
        at = NOW - timedelta(hours=1) + timedelta(minutes=i)
        kind, n = step[0], int(step[1:]) if step[1:].isdigit() else 0
        if step == "v":
            t, f = audit.REQUEST_VALIDATED, {"content_hash": "sha256:c", "fingerprint": "sha256:f",
                                            "batches": [b.to_dict() for b in BATCHES], "pause_seconds": 600.0}
        elif step == "done":
            t, f = audit.REQUEST_FINISHED, {"outcome": audit.SUCCEEDED, "reason": "ok"}
        elif kind == "s":
            t, f = audit.BATCH_SUBMITTED, {"batch": n, "attempt": 1, "flow_run_id": f"run-{n}"}
        elif kind == "r":
            t, f = audit.BATCH_RUNNING, {"batch": n, "attempt": 1, "flow_run_id": f"run-{n}"}
        else:
            state = {"c": audit.B_COMPLETED, "f": audit.B_FAILED, "x": audit.B_CRASHED}[kind]
            t, f = audit.BATCH_FINISHED, {"batch": n, "attempt": 1, "flow_run_id": f"run-{n}", "state": state}
        out.append(AuditEvent(t, "r1", at, i, f"{i:08x}", f))
    return out


def view(trail: tuple[str, ...] = (), **kw: Any) -> View:
    kw.setdefault("approved", approved())
    return View(state=audit.derive("r1", events(*trail)), now=kw.pop("now", NOW), **kw)


def run(state: str, **kw: Any) -> RunView:
    final = state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "MISSING")
    return RunView("run-1", state, final=final, **kw)


CASES: list[tuple[str, View, type, dict[str, Any]]] = [
    ("first sight: validate", view(), reconcile.Validate, {}),
    ("validated ok: record it", view(validation=OK), reconcile.RecordValidated, {}),
    ("first validation fails", view(validation=Revalidation(ok=False, problems=("RR101 no ticket",))),
     reconcile.Finish, {"outcome": audit.NEEDS_OPERATOR}),
    ("window never opens again", view(validation=Revalidation(ok=False, expired="expired (RR307)")),
     reconcile.Finish, {"outcome": audit.EXPIRED}),
    ("before submitting: re-validate", view(("v",)), reconcile.Validate, {}),
    ("then look for an existing run", view(("v",), validation=OK), reconcile.Lookup, {"attempt": 1}),
    ("a run exists: adopt it", view(("v",), validation=OK, found=run("RUNNING")), reconcile.Adopt, {}),
    ("no run: ask the queue", view(("v",), validation=OK, found=None), reconcile.AskContention, {}),
    ("queue busy: wait", view(("v",), validation=OK, found=None, contention=WAIT), reconcile.Wait,
     {"kind": audit.QUEUE_BUSY, "reason": "wait: 5/5 slots busy", "until": None}),
    ("queue busy: the forecast's next fit is shown",
     view(("v",), validation=OK, found=None, contention=Decision(
        False, ("wait: 5/5 slots busy",), next_fit=NOW + timedelta(minutes=40))),
     reconcile.Wait,
     {"kind": audit.QUEUE_BUSY, "until": NOW + timedelta(minutes=40)}),
    ("queue free: submit", view(("v",), validation=OK, found=None, contention=GO), reconcile.Submit,
     {"attempt": 1}),
    ("an earlier request rebuilds the same model", view(("v",), validation=OK, earlier=(
        Earlier("r0", frozenset({"model.p.b"})),)), reconcile.Wait, {"kind": audit.AFTER_REQUEST}),
    ("an earlier request rebuilds an upstream model", view(("v",), validation=replace(
        OK, upstream=frozenset({"model.p.stg"})), earlier=(Earlier("r0", frozenset({"model.p.stg"})),)),
     reconcile.Wait, {"kind": audit.AFTER_REQUEST}),
    ("an earlier request not validated yet", view(("v",), validation=OK, earlier=(Earlier("r0", None),)),
     reconcile.Wait, {"kind": audit.AFTER_REQUEST}),
    ("an independent earlier request: go on", view(("v",), validation=OK, earlier=(
        Earlier("r0", frozenset({"model.p.other"})),)), reconcile.Lookup, {"attempt": 1}),
    ("plan drift", view(("v",), validation=replace(OK, fingerprint="sha256:other")), reconcile.Finish,
     {"outcome": audit.NEEDS_OPERATOR}),
    ("in flight: ask the run", view(("v", "s1")), reconcile.AskRun, {}),
    ("scheduled: nothing to do", view(("v", "s1"), run=run("SCHEDULED")), reconcile.Idle, {"active": True}),
    ("running: record it once", view(("v", "s1"), run=run("RUNNING")), reconcile.RecordRunning, {}),
    ("still running", view(("v", "s1", "r1"), run=run("RUNNING")), reconcile.Idle, {"active": True}),
    ("completed", view(("v", "s1", "r1"), run=run("COMPLETED")), reconcile.RecordFinished,
     {"state": audit.B_COMPLETED}),
    ("failed", view(("v", "s1"), run=run("FAILED")), reconcile.RecordFinished, {"state": audit.B_FAILED}),
    ("crashed", view(("v", "s1"), run=run("CRASHED")), reconcile.RecordFinished, {"state": audit.B_CRASHED}),
    ("run gone", view(("v", "s1"), run=None), reconcile.RecordFinished, {"state": audit.B_MISSING}),
    ("orphaned embedded run", view(("v", "s1"), run=run("RUNNING", orphaned=True)), reconcile.RecordFinished,
     {"state": audit.B_UNKNOWN}),
    ("batch failed: request failed", view(("v", "s1", "f1")), reconcile.Finish, {"outcome": audit.FAILED}),
    ("crashed: an operator decides", view(("v", "s1", "x1")), reconcile.Finish,
     {"outcome": audit.NEEDS_OPERATOR}),
    ("pause between batches", view(("v", "s1", "c1"), now=NOW - timedelta(minutes=55)), reconcile.Wait,
     {"kind": audit.PAUSE, "until": NOW - timedelta(minutes=47)}),  # batch 1 finished at -57 min
    ("pause over: re-validate", view(("v", "s1", "c1")), reconcile.Validate, {}),
    ("all batches done", view(("v", "s1", "c1", "s2", "c2")), reconcile.Finish, {"outcome": audit.SUCCEEDED}),
    ("finished: idle", view(("v", "s1", "c1", "s2", "c2", "done")), reconcile.Idle, {"active": False}),
    ("removed before it started", view(("v",), approved=None), reconcile.Finish,
     {"outcome": audit.CANCELLED}),
    ("removed after batch 1", view(("v", "s1", "c1"), approved=None), reconcile.Finish,
     {"outcome": audit.NEEDS_OPERATOR}),
    ("expired before it started", view(("v",), approved=approved(expired="expired (RR103)")),
     reconcile.Finish, {"outcome": audit.EXPIRED}),
    ("expired half way", view(("v", "s1", "c1"), approved=approved(expired="expired (RR103)")),
     reconcile.Finish, {"outcome": audit.NEEDS_OPERATOR}),
    ("window closed", view(("v",), approved=approved(NIGHT)), reconcile.Wait,
     {"kind": audit.WINDOW_CLOSED, "until": datetime(2026, 11, 24, 1, 0, tzinfo=UTC)}),
    # A window that never opens again ends the request instead of wedging it in "waiting".
    ("window over before it started", view(("v",), approved=approved(PAST)), reconcile.Finish,
     {"outcome": audit.EXPIRED}),
    ("window over half way: an operator decides", view(("v", "s1", "c1"), approved=approved(PAST)),
     reconcile.Finish, {"outcome": audit.NEEDS_OPERATOR}),
    ("window open", view(("v",), approved=approved(NIGHT), now=datetime(2026, 11, 24, 2, 0, tzinfo=UTC)),
     reconcile.Validate, {}),
    ("after a crash, adopt before any wait", view(("v",), approved=approved(NIGHT), recovering=True,
                                                  found=run("RUNNING")), reconcile.Adopt, {}),
    ("after a crash, look first", view(("v",), approved=None, recovering=True), reconcile.Lookup, {}),
]


@pytest.mark.parametrize(("name", "v", "kind", "expected"), CASES, ids=[c[0] for c in CASES])
def test_next_step(name: str, v: View, kind: type, expected: dict[str, Any]) -> None:
    step = reconcile.next_step(v)
    assert isinstance(step, kind), step
    for key, value in expected.items():
        assert getattr(step, key) == value, (key, step)


def test_questions_are_asked_once() -> None:
    """Answering a question never leads to the same question again (the runner's loop terminates)."""
    for _, v, kind, _ in CASES:
        if kind in reconcile.QUESTIONS:
            answers: dict[type, dict[str, Any]] = {
                reconcile.Validate: {"validation": OK}, reconcile.AskRun: {"run": run("RUNNING")},
                reconcile.Lookup: {"found": None}, reconcile.AskContention: {"contention": GO}}
            answered = answers[kind]
            assert not isinstance(reconcile.next_step(replace(v, **answered)), kind)
    assert NOT_ASKED is reconcile.NOT_ASKED


def test_window_wait_is_told_in_the_request_zone() -> None:
    berlin = Window(daily=DailyWindow(time(1, 0), time(5, 0)), timezone="Europe/Berlin")
    step = reconcile.next_step(view(("v",), approved=approved(berlin)))
    assert isinstance(step, reconcile.Wait)
    assert step.reason == "window closed: opens 2026-11-24 01:00 Europe/Berlin (00:00 UTC)"
