"""The runner's decisions, pure: facts about one request in, the next step out.

``next_step(view)`` looks at what the audit trail says (``RequestState``), what the
protected branch holds (``Approved``), and whatever the runner has already asked the outside
world in this pass (re-validation, the state of a run, a run found by its idempotency key,
the queue), and names exactly one next step. Steps are either questions (``Validate``,
``AskRun``, ``Lookup``, ``AskContention``: the runner answers them and asks again) or
actions (an event to record, a batch to submit, a wait to note, or nothing to do now).

The state machine of one request (each arrow is one recorded event)::

    (approved on the protected branch)
      -> request_validated --------------------------------------------+
      -> waiting(window_closed | queue_busy | pause | after_request) <-> ...
      -> batch_submitted(k) -> batch_running(k) -> batch_finished(k)   |
           completed and more batches: back to waiting / submit k+1    |
      -> request_finished(succeeded | failed | needs_operator | expired | cancelled)

Rules: batch k+1 only after batch k completed and the pause elapsed; a run that ended in
any way but COMPLETED or FAILED (crashed, cancelled, missing, orphaned) is an unknown outcome
and needs an operator, never an automatic resubmission; a changed fingerprint needs an
operator; a request gone from the branch before it started is cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import audit
from .audit import RequestState
from .model import PlannedBatch, Request

# ---- facts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approved:
    """A request file as found on the protected branch (decoded when possible, not yet validated)."""

    request_id: str
    path: str
    content: bytes = field(repr=False)
    content_hash: str
    merge_order: int
    commit: str = ""  # the commit of the protected branch that added the file
    request: Request | None = None  # None: the file does not decode (validation says why)
    expired: str | None = None  # why it is expired (RR103), computed without dbt
    approved_sha: str = ""  # the protected-branch tip this pass read (and validates) the request at

    @property
    def priority(self) -> int:
        return self.request.priority if self.request is not None else 0


@dataclass(frozen=True)
class Revalidation:
    """The result of re-validating an approved request now, with the branch's config and policy.

    ``context`` carries what submission needs (request, graph, dbt selector); it is opaque
    here and never compared.
    """

    ok: bool
    fingerprint: str | None = None
    batches: tuple[PlannedBatch, ...] = ()
    pause_seconds: float = 0.0
    problems: tuple[str, ...] = ()  # blocking findings, one line each
    expired: str | None = None  # RR103 / RR307: it can never run any more
    warnings: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    # What the plan was derived from, recorded with it and compared at every pass (``drift``).
    policy: str = ""  # the policy hash
    digests: Mapping[str, str] = field(default_factory=dict)  # selected model -> code+config digest
    upstream_digest: str = ""  # one digest over the nodes the selection depends on
    event_time: tuple[str, str] | None = None  # the microbatch window, ISO UTC
    context: Any = field(default=None, compare=False, repr=False)
    upstream: frozenset[str] = frozenset()  # every node the request's models depend on

    def batch(self, index: int) -> PlannedBatch | None:
        """The re-derived batch ``index`` (what is submitted; never the trail's copy)."""
        return next((b for b in self.batches if b.index == index), None)


@dataclass(frozen=True)
class RunView:
    """A flow run as the executor sees it now. ``state`` is Prefect's state type (upper case)."""

    flow_run_id: str
    state: str | None
    final: bool
    url: str | None = None
    name: str | None = None
    state_name: str | None = None
    idempotency_key: str | None = None
    mode: str = "server"
    counts: Mapping[str, int] = field(default_factory=dict)
    failed_nodes: tuple[str, ...] = ()
    orphaned: bool = False  # embedded: not final, but the process running it is gone
    started_at: datetime | None = None  # when Prefect says it started running
    error: str | None = None  # the first failing node and dbt's message (truncated, redacted)
    rebuilt: tuple[str, ...] = ()  # models this run rebuilt (its summary.json)
    skipped: tuple[str, ...] = ()  # nodes dbt skipped downstream of a failure
    commit: str | None = None  # the commit the run builds


MISSING = "MISSING"  # RunView.state when the run is gone from Prefect


class _NotAsked:
    def __repr__(self) -> str:
        return "NOT_ASKED"


NOT_ASKED: Any = _NotAsked()


@dataclass(frozen=True)
class Earlier:
    """A request merged before this one and not finished; ``models`` None: not validated yet."""

    request_id: str
    models: frozenset[str] | None


@dataclass(frozen=True)
class View:
    """Everything known about one request in this pass."""

    state: RequestState
    approved: Approved | None
    now: datetime
    validation: Revalidation | None = None
    run: RunView | Any | None = NOT_ASKED  # the in-flight batch's run; None: not found
    found: RunView | Any | None = NOT_ASKED  # a run of the next batch found by its key
    contention: Any = None  # contention.Decision for the next batch
    earlier: tuple[Earlier, ...] = ()  # requests merged before this one and not finished
    recovering: bool = False  # the previous runner died holding the lock: look for its runs first
    trail: tuple[str, ...] = ()  # why the request's audit trail cannot be trusted (audit.examine)
    lookup: bool = True  # look for an existing run before every submission (cheap on a server)
    running_long: tuple[float, float] | None = None  # (factor of the estimate, minimum seconds)


# ---- steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validate:
    """Question: re-validate the approved request now (``keep``: the approved batch cut, if any)."""

    keep: tuple[PlannedBatch, ...] | None = None


@dataclass(frozen=True)
class AskRun:
    """Question: the state of the run of the in-flight batch."""

    record: audit.BatchRecord


@dataclass(frozen=True)
class Lookup:
    """Question: does a run of this batch and attempt already exist (by idempotency key)?"""

    batch: PlannedBatch
    attempt: int


@dataclass(frozen=True)
class AskContention:
    """Question: may a batch (heavy or not) be submitted now, and end before its window closes?"""

    batch: PlannedBatch
    window_end: datetime | None = None  # None: the request's window does not close soon
    timezone: str | None = None  # the request's zone, for the times in the decision


@dataclass(frozen=True)
class RecordValidated:
    validation: Revalidation


@dataclass(frozen=True)
class Adopt:
    """A run of the next batch exists but the trail does not say so: record it, do not resubmit."""

    batch: PlannedBatch
    attempt: int
    run: RunView


@dataclass(frozen=True)
class Submit:
    batch: PlannedBatch
    attempt: int
    reasons: tuple[str, ...] = ()  # the contention decision, for the report


@dataclass(frozen=True)
class RecordRunning:
    record: audit.BatchRecord


@dataclass(frozen=True)
class RecordRunningLong:
    """The in-flight batch has run far beyond its estimate: say so once (an alert)."""

    record: audit.BatchRecord
    seconds: float
    estimate_seconds: float


@dataclass(frozen=True)
class RecordFinished:
    record: audit.BatchRecord
    state: str  # one of audit.BATCH_FINAL_STATES
    run: RunView | None
    reason: str | None = None


@dataclass(frozen=True)
class Finish:
    outcome: str
    reason: str


@dataclass(frozen=True)
class Wait:
    """Nothing may happen now, for a recorded reason (recorded when the kind changes)."""

    kind: str
    reason: str
    batch: int | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Idle:
    """Nothing to do now and nothing to record (finished, or a run is on its way)."""

    reason: str
    active: bool = False  # a run is in flight: --wait keeps polling


Step = (Validate | AskRun | Lookup | AskContention | RecordValidated | Adopt | Submit | RecordRunning
        | RecordRunningLong | RecordFinished | Finish | Wait | Idle)
QUESTIONS = (Validate, AskRun, Lookup, AskContention)


def batch_state(run: RunView) -> str:
    """The recorded batch state for a final run."""
    if run.state == MISSING:
        return audit.B_MISSING
    if run.orphaned:
        return audit.B_UNKNOWN
    return {"COMPLETED": audit.B_COMPLETED, "FAILED": audit.B_FAILED, "CRASHED": audit.B_CRASHED,
            "CANCELLED": audit.B_CANCELLED}.get(run.state or "", audit.B_UNKNOWN)


def next_step(v: View) -> Step:
    """The one next step for a request (see the module docstring for the rules)."""
    s, a = v.state, v.approved
    if s.terminal:
        return Idle(f"{s.outcome}")

    # 0. The trail is a record, not an instruction: one that cannot be trusted stops the request.
    if v.trail:
        return Finish(audit.NEEDS_OPERATOR, "the audit trail cannot be trusted: " + "; ".join(v.trail[:3])
                      + "; nothing was submitted. Inspect `rescue log`, then `rescue retry` "
                      "(--accept-plan to approve the plan as it is now)")

    # 1. A batch in flight: follow its run until it is final.
    rec = s.in_flight
    if rec is not None:
        if v.run is NOT_ASKED:
            return AskRun(rec)
        run: RunView | None = v.run
        if run is None or run.state == MISSING:
            return RecordFinished(rec, audit.B_MISSING, run,
                                  f"flow run {rec.flow_run_id} of batch {rec.index} is missing in Prefect")
        if run.orphaned:
            return RecordFinished(rec, audit.B_UNKNOWN, run,
                                  f"the runner died during embedded flow run {rec.flow_run_id}: "
                                  "its outcome is unknown")
        if not run.final:
            if run.state == "RUNNING" and rec.state == audit.B_SUBMITTED:
                return RecordRunning(rec)
            long = _running_long(v, rec, run)
            if long is not None:
                return long
            return Idle(f"batch {rec.index} {(run.state_name or run.state or 'submitted').lower()}",
                        active=True)
        state = batch_state(run)
        reason = None if state == audit.B_COMPLETED else \
            f"batch {rec.index} flow run {rec.flow_run_id} ended {run.state_name or run.state}"
        return RecordFinished(rec, state, run, reason)

    total = len(s.plan)
    # 2. The last batch ended badly: the request ends.
    last = s.last_finished
    if last is not None and last.state != audit.B_COMPLETED:
        if last.state == audit.B_FAILED:
            return Finish(audit.FAILED, failure_reason(last))
        return Finish(audit.NEEDS_OPERATOR,
                      f"batch {last.index} (flow run {last.flow_run_id}) ended "
                      f"{last.state_name or last.state}: the outcome is unknown; check the flow run and "
                      "the warehouse, then `rescue retry` or `rescue close`")

    # 3. Everything approved ran.
    if s.validated and s.next_batch is None:
        return Finish(audit.SUCCEEDED, f"{total} batch(es) completed")

    # 4. After a crash, a run the dead runner submitted but did not record is adopted first,
    #    whatever else holds the request back (in normal passes the lookup precedes submission).
    if v.recovering and s.validated and s.next_batch is not None:
        if v.found is NOT_ASKED:
            return Lookup(s.next_batch, s.attempt)
        if v.found is not None:
            return Adopt(s.next_batch, s.attempt, v.found)

    # 5. Gone from the branch.
    if a is None:
        if not s.started:
            return Finish(audit.CANCELLED, "removed from the protected branch before it started")
        return Finish(audit.NEEDS_OPERATOR, f"removed from the protected branch after {s.completed} of "
                                            f"{total} batch(es); the rest did not run")

    # 6. Expired (cheap check, before any dbt work).
    if a.expired:
        return _expired(s, a.expired, total)

    # 7. First sight: validate with the branch's config and policy and record the plan.
    val = v.validation
    if not s.validated:
        if val is None:
            return Validate()
        if val.expired:
            return _expired(s, val.expired, total)
        if not val.ok:
            return Finish(audit.NEEDS_OPERATOR, "validation failed: " + "; ".join(val.problems[:5]))
        return RecordValidated(val)

    nxt = s.next_batch
    assert nxt is not None
    # 8. Pause after the previous batch (no dbt needed to know).
    req = a.request
    from .windows import show_time

    tz = req.window.timezone if req is not None and req.window is not None else None
    prev = s.last_completed
    if prev is not None and s.pause_seconds > 0 and prev.finished_at is not None:
        until = prev.finished_at + timedelta(seconds=s.pause_seconds)
        if v.now < until:
            return Wait(audit.PAUSE, f"pause between batches: batch {nxt.index} not before "
                                     f"{show_time(until, tz, seconds=True)}", nxt.index, until)

    # 9. The request's window (times shown in its zone, UTC beside them).
    window_end = None
    if req is not None and req.window is not None:
        from .windows import closes_at, is_open, next_open

        window_end = closes_at(req.window, v.now)
        if not is_open(req.window, v.now):
            opens = next_open(req.window, v.now)
            if opens is None:  # waiting would wedge the request: it ends, loudly if it had started
                return _expired(s, "its window closed and does not open again"
                                + (f" (not_after {show_time(req.window.not_after, tz)})"
                                   if req.window.not_after else ""), total)
            return Wait(audit.WINDOW_CLOSED, f"window closed: opens {show_time(opens, tz)}", nxt.index, opens)

    # 10. Before any submission: re-derive the plan now; it must equal the recorded one.
    if val is None:
        return Validate(s.plan)
    if val.expired:
        return _expired(s, val.expired, total)
    if not val.ok:
        return Finish(audit.NEEDS_OPERATOR, "re-validation failed: " + "; ".join(val.problems[:5]))
    changes = drift(s, val, a)
    if changes:
        return Finish(audit.NEEDS_OPERATOR,
                      "plan drift: " + "; ".join(changes) + f". If the new plan is right: `rescue retry "
                      f"{s.request_id} --accept-plan --by <you> --reason <why>`")
    derived = val.batch(nxt.index)
    assert derived is not None  # drift() compared every batch
    nxt = derived

    # 11. A request merged earlier and not finished goes first when the two share lineage (the
    #     same models, or its models upstream of this one's); independent requests do not wait.
    after = _shared_lineage(s, val, v.earlier)
    if after is not None:
        return Wait(audit.AFTER_REQUEST, after, nxt.index)

    # 12. A run of this batch may exist already (a runner died before recording it): adopt it.
    if v.found is NOT_ASKED and (v.lookup or v.recovering):
        return Lookup(nxt, s.attempt)
    if v.found is not NOT_ASKED and v.found is not None:
        return Adopt(nxt, s.attempt, v.found)

    # 13. Room in the queue.
    if v.contention is None:
        return AskContention(nxt, window_end, req.window.timezone if req and req.window else None)
    if not v.contention.go:
        # ``until`` is the forecast's next fit, as a promise to show, not a wake-up time: every
        # pass asks the queue again, since runs often end before their typical duration.
        return Wait(audit.QUEUE_BUSY, v.contention.summary, nxt.index, v.contention.next_fit)
    return Submit(nxt, s.attempt, tuple(v.contention.reasons))


def failure_reason(rec: audit.BatchRecord) -> str:
    """Why a batch failed, for status, log and alerts: dbt's first message, the warehouse left behind."""
    if rec.error:
        why = f": {rec.error}"
    else:
        why = f": {', '.join(rec.failed_nodes[:5])}" if rec.failed_nodes else ""
    text = f"batch {rec.index} failed{why}"
    if rec.rebuilt or rec.skipped:
        text += (f"; warehouse left mixed: {len(rec.rebuilt)} model(s) rebuilt ({_node_names(rec.rebuilt)}), "
                 f"{len(rec.skipped)} downstream node(s) skipped ({_node_names(rec.skipped)}) and still old")
    return text + f"; flow run {rec.url or rec.flow_run_id}"


def _node_names(uids: tuple[str, ...], limit: int = 5) -> str:
    if not uids:
        return "none"
    names = ", ".join(_name(u) for u in uids[:limit])
    return names + (f" and {len(uids) - limit} more" if len(uids) > limit else "")


def _name(uid: str) -> str:
    """``model.pkg.orders`` -> ``orders``; ``test.pkg.not_null_orders_id.ab12`` -> ``not_null_orders_id``."""
    parts = uid.split(".")
    if len(parts) < 3:
        return uid
    return parts[2] if parts[0] == "test" else ".".join(parts[2:])


def _running_long(v: View, rec: audit.BatchRecord, run: RunView) -> RecordRunningLong | None:
    """The running-long note for a RUNNING batch far beyond its estimate (once per run)."""
    if v.running_long is None or rec.running_long or run.state != "RUNNING" or run.started_at is None:
        return None
    factor, minimum = v.running_long
    planned = next((b for b in v.state.plan if b.index == rec.index), None)
    estimate = planned.estimated_seconds if planned is not None else 0.0
    ran = (v.now - run.started_at).total_seconds()
    if ran > max(minimum, factor * estimate):
        return RecordRunningLong(rec, ran, estimate)
    return None


def _shared_lineage(s: RequestState, val: Revalidation, earlier: tuple[Earlier, ...]) -> str | None:
    mine = frozenset(m for b in s.plan for m in b.models)
    for e in earlier:
        if e.models is None:
            return f"after {e.request_id}: merged earlier and not validated yet (its lineage is unknown)"
        same = sorted(mine & e.models)
        above = sorted((val.upstream & e.models) - mine)
        if same or above:
            shown = ", ".join(m.rsplit(".", 1)[-1] for m in (same or above)[:3])
            more = len(same or above) - 3
            what = "also rebuilds" if same else "depends on"
            return (f"after {e.request_id}: merged earlier and not finished; this request {what} "
                    f"{shown}{f' (+{more} more)' if more > 0 else ''}")
    return None


def drift(s: RequestState, val: Revalidation, a: Approved | None) -> list[str]:
    """What differs between the recorded plan and the one re-derived now (empty: none).

    Compared: the batches (index, models in order, full refresh), the event-time window and the
    fingerprint; the recorded inputs (request content, model digests, upstream, policy) name
    the cause.
    """
    rec = s.recorded
    out: list[str] = []
    if a is not None and s.content_hash and a.content_hash != s.content_hash:
        out.append("the request file changed")
    before = {m for b in s.plan for m in b.models}
    now = {m for b in val.batches for m in b.models}
    if now - before:
        out.append("models added: " + _names(now - before))
    if before - now:
        out.append("models removed: " + _names(before - now))
    fr_before = {m for b in s.plan if b.full_refresh for m in b.models}
    fr_now = {m for b in val.batches if b.full_refresh for m in b.models}
    if fr_now != fr_before and before == now:
        out.append("full refresh changed for: " + _names(fr_now ^ fr_before))
    digests = rec.get("digests")
    if isinstance(digests, Mapping):
        changed = {m for m in before & now if digests.get(m) != val.digests.get(m)}
        if changed:
            out.append("code or config changed: " + _names(changed))
    if rec.get("upstream_digest") is not None and rec.get("upstream_digest") != val.upstream_digest:
        out.append("a model or source the selection depends on changed")
    if rec.get("policy") is not None and rec.get("policy") != val.policy:
        out.append("the policy changed")
    recorded_window = rec.get("event_time")
    if tuple(recorded_window or ()) != tuple(val.event_time or ()):
        out.append("the event-time window changed")
    same = len(s.plan) == len(val.batches) and \
        all(x.same_work(y) for x, y in zip(s.plan, val.batches, strict=True))
    if not same and before == now and fr_now == fr_before:
        out.append("the batches differ from the recorded plan")
    if not out and val.fingerprint != s.fingerprint:
        out.append(f"fingerprint {_short(val.fingerprint)} now, {_short(s.fingerprint)} when approved")
    return out


def _names(ids: set[str], limit: int = 5) -> str:
    shown = sorted(m.rsplit(".", 1)[-1] for m in ids)
    return ", ".join(shown[:limit]) + (f" (+{len(shown) - limit} more)" if len(shown) > limit else "")


def _expired(s: RequestState, why: str, total: int) -> Finish:
    if not s.started:
        return Finish(audit.EXPIRED, why)
    return Finish(audit.NEEDS_OPERATOR,
                  f"{why}; after {s.completed} of {total} batch(es), the rest did not run")


def _short(fp: str | None) -> str:
    return (fp or "none").removeprefix("sha256:")[:12]
