"""The audit trail is a record, not an instruction: hash chain, unreadable trails, drift named,
and what is submitted is the batch re-derived now, never the trail's copy."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rescue_runner import audit, reconcile
from rescue_runner.audit import AuditEvent
from rescue_runner.contention import Decision
from rescue_runner.model import PlannedBatch, Request
from rescue_runner.reconcile import Approved, Revalidation, View

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
A, B, C = "model.p.a", "model.p.b", "model.p.c"
PLAN = (PlannedBatch(1, (A,), estimated_seconds=5.0), PlannedBatch(2, (B,), estimated_seconds=5.0))
DIGESTS = {A: "da", B: "db"}
OK = Revalidation(ok=True, fingerprint="sha256:f", batches=PLAN, policy="sha256:p", digests=DIGESTS,
                upstream_digest="sha256:u")
GO = Decision(True, ("go",))


def approved() -> Approved:
    req = Request(id="r1", path="rescues/r1.yaml", version=1, reason="a long enough reason",
                  requested_by="ana", select=("x",))
    return Approved("r1", "rescues/r1.yaml", b"x", "sha256:c", 0, "abc", req)


def chain(*specs: tuple[str, dict[str, Any]]) -> list[AuditEvent]:
    """Events written as the runner writes them: each one's ``prev`` is the digest of the one before."""
    out: list[AuditEvent] = []
    for i, (type_, fields) in enumerate(specs, start=1):
        out.append(AuditEvent(type_, "r1", NOW - timedelta(minutes=10 - i), i, f"{i:08x}", fields,
                              prev=out[-1].digest if out else ""))
    return out


def validated(batches: tuple[PlannedBatch, ...] = PLAN, **kw: Any) -> tuple[str, dict[str, Any]]:
    fields = {"content_hash": "sha256:c", "fingerprint": "sha256:f",
              "batches": [b.to_dict() for b in batches], "policy": "sha256:p", "digests": DIGESTS,
              "upstream_digest": "sha256:u", "event_time": None}
    return audit.REQUEST_VALIDATED, {**fields, **kw}


WAITING = (audit.WAITING, {"kind": audit.WINDOW_CLOSED, "reason": "window closed", "batch": 1})


def view(events: list[AuditEvent], **kw: Any) -> View:
    state, problems = audit.examine("r1", events)
    return View(state=state, approved=approved(), now=NOW, trail=tuple(problems), **kw)


def test_an_untouched_trail_is_trusted() -> None:
    state, problems = audit.examine("r1", chain(validated(), WAITING))
    assert problems == [] and state.validated and state.last_digest


def test_a_forged_event_breaks_the_chain_and_stops_the_request_without_submitting() -> None:
    events = chain(validated(), WAITING)
    forged = replace(events[0], fields={**events[0].fields,
                                        "batches": [PlannedBatch(1, (A, B, C), full_refresh=True).to_dict()]})
    trail = [forged, events[1]]
    _, problems = audit.examine("r1", trail)
    assert len(problems) == 1 and "event #1" in problems[0] and forged.path in problems[0]
    step = reconcile.next_step(view(trail, validation=OK, found=None, contention=GO))
    assert isinstance(step, reconcile.Finish) and step.outcome == audit.NEEDS_OPERATOR
    assert "hash chain broken" in step.reason and "nothing was submitted" in step.reason


def test_an_unparsable_event_is_a_problem_not_a_crash() -> None:
    events = chain(validated(), WAITING)
    broken = chain((audit.REQUEST_VALIDATED, {**events[0].fields, "batches": [{"models": "oops"}]}), WAITING)
    state, problems = audit.examine("r1", broken)
    assert any("cannot be read" in p for p in problems) and state.last_seq == 2
    _, problems = audit.examine("r1", events, unreadable=["events/r1/x.json"])
    assert problems == ["events/r1/x.json: not a readable audit event"]
    assert set(audit.examine_all(events, ["events/r2/y.json"])) == {"r1", "r2"}


def test_the_last_event_forged_is_caught_by_re_derivation() -> None:
    """No later event proves the last one; the plan re-derived now does, and names the difference."""
    events = chain(validated(batches=(PlannedBatch(1, (A, C), full_refresh=True), PLAN[1])))
    step = reconcile.next_step(view(events, validation=OK))
    assert isinstance(step, reconcile.Finish) and step.outcome == audit.NEEDS_OPERATOR
    assert "models removed: c" in step.reason and "--accept-plan" in step.reason


def test_what_is_submitted_is_the_batch_derived_now() -> None:
    # Estimates in the record differ (fresher history): not drift; the submitted batch is the validation's.
    recorded = tuple(replace(b, estimated_seconds=99.0) for b in PLAN)
    events = chain(validated(batches=recorded))
    step = reconcile.next_step(view(events, validation=OK, found=None, contention=GO))
    assert isinstance(step, reconcile.Submit)
    assert step.batch is OK.batches[0]


def test_drift_names_what_changed() -> None:
    events = chain(validated())
    cases = {
        "models added: c": replace(OK, batches=(*PLAN, PlannedBatch(3, (C,)))),
        "code or config changed: b": replace(OK, digests={A: "da", B: "db2"}),
        "a model or source the selection depends on changed": replace(OK, upstream_digest="sha256:u2"),
        "the policy changed": replace(OK, policy="sha256:p2"),
        "full refresh changed for: a": replace(OK, batches=(replace(PLAN[0], full_refresh=True), PLAN[1])),
        "the event-time window changed": replace(OK, event_time=("2026-11-01T00:00:00+00:00",
                                                                  "2026-11-02T00:00:00+00:00")),
    }
    for expected, val in cases.items():
        step = reconcile.next_step(view(events, validation=val))
        assert isinstance(step, reconcile.Finish), expected
        assert expected in step.reason, (expected, step.reason)
    # An unrelated change (nothing in the request's scope) is no drift at all.
    assert not reconcile.drift(audit.examine("r1", events)[0], OK, approved())


def test_accept_plan_records_a_new_plan_that_runs_whole() -> None:
    done = (audit.BATCH_SUBMITTED, {"batch": 1, "attempt": 1, "flow_run_id": "run-1"})
    fin = (audit.BATCH_FINISHED, {"batch": 1, "attempt": 1, "flow_run_id": "run-1",
                                  "state": audit.B_COMPLETED})
    drifted = (audit.REQUEST_FINISHED, {"outcome": audit.NEEDS_OPERATOR, "reason": "plan drift"})
    retry = (audit.OPERATOR_RETRY, {"attempt": 2, "by": "ana", "reason": "new plan reviewed",
                                    "accept_plan": True})
    state, problems = audit.examine("r1", chain(validated(), done, fin, drifted, retry))
    assert problems == [] and not state.terminal and not state.validated and state.completed == 0
    step = reconcile.next_step(View(state=state, approved=approved(), now=NOW))
    assert isinstance(step, reconcile.Validate)
    # A plain retry keeps the approved plan and its completed batch.
    plain = (audit.OPERATOR_RETRY, {"attempt": 2, "by": "ana", "reason": "worker crash checked"})
    state, _ = audit.examine("r1", chain(validated(), done, fin, drifted, plain))
    assert state.validated and state.completed == 1 and state.next_batch == PLAN[1]
