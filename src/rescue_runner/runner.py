"""``rescue apply``: one reconcile pass over the approved requests (or passes until idle).

The runner owns no state. Each pass reads the audit trail and the protected branch, takes
the environment's lock, then asks ``reconcile.next_step`` what to do for each request in
order (priority, then merge order), answers its questions (re-validation, run states, runs
found by idempotency key, the queue) and performs its actions, recording every one as an
audit event before moving on. Everything outside is behind a Protocol (``AuditStore``,
``Lock``, ``Source``, ``Validator``, ``Executor``, ``Clock``), so the Hypothesis model in
the tests drives this exact code with fakes, crashes included.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from . import audit, reconcile
from .audit import AuditEvent, BatchRecord, RequestState
from .contention import Ask
from .faults import FaultHook, no_faults
from .forecast import Occupant
from .model import PlannedBatch
from .reconcile import NOT_ASKED, Approved, Earlier, Revalidation, RunView, View

if TYPE_CHECKING:
    from .config import Config

MAX_STEPS = 64  # per request per pass; a pass that needs more is a bug, not a busy queue


# ---- what the runner needs from the outside ------------------------------------------------

class Clock(Protocol):
    def now(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...


class AuditStore(Protocol):
    """The audit trail: ``refresh`` fetches; ``append`` returns once the event is durable (pushed)."""

    def refresh(self) -> None: ...
    def events(self) -> list[AuditEvent]: ...
    def append(self, event: AuditEvent) -> None: ...


@dataclass(frozen=True)
class LockResult:
    acquired: bool
    holder: str
    expires: datetime | None = None
    recovered: bool = False  # taken over from a holder that died (or whose lease expired)
    message: str = ""
    stuck: bool = False  # not acquired: the same holder has held it for many lease periods


class Lock(Protocol):
    holder: str

    def acquire(self) -> LockResult: ...
    def renew(self, *, force: bool = False) -> None: ...
    def fence(self) -> str:
        """Before a side effect: raise unless this runner still holds the lock; return the fencing token."""
        ...
    def release(self) -> None: ...


class Source(Protocol):
    """The approved requests: the protected branch as of the last ``AuditStore.refresh``."""

    def approved(self) -> list[Approved]: ...


class Validator(Protocol):
    def validate(self, approved: Approved, now: datetime, *,
                 keep: Sequence[PlannedBatch] | None = None) -> Revalidation: ...


class Executor(Protocol):
    """Runs batches: on a Prefect server (``server``) or in this process (``embedded``)."""

    mode: str
    lookup_before_submit: bool  # False: runs can only exist unrecorded after a crash (embedded)

    def find_run(self, state: RequestState, batch: PlannedBatch, attempt: int) -> RunView | None: ...
    def submit(self, approved: Approved, validation: Revalidation, state: RequestState, batch: PlannedBatch,
               attempt: int) -> RunView: ...
    def run_state(self, state: RequestState, record: BatchRecord) -> RunView | None: ...
    def contention(self, ask: Ask) -> Any: ...  # contention.Decision


class SystemClock:
    """The wall clock, UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class OffsetClock:
    """An injected start instant that then advances with real time (``--now`` / RESCUE_NOW)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("--now needs a timezone (e.g. 2026-11-24T01:30:00Z)")
        self.start = start.astimezone(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._t0)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


@dataclass
class Wiring:
    """The adapters of one runner, built from the local configuration (``operate.wire``)."""

    config: Config
    remote: Any  # adapters.git_audit.GitRemote
    store: Any  # AuditStore (adapters.git_audit.GitAuditStore)
    source: Any  # Source (adapters.git_branch.GitApprovedSource)
    clock: Clock


# ---- reports -------------------------------------------------------------------------------

@dataclass
class RunnerAction:
    """One line of what the runner did (or, in a dry run, would do) for a request."""

    request_id: str
    action: str  # validated | waiting | submitted | adopted | running | finished | done | idle | ...
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.request_id, "action": self.action, "message": self.message, **self.data}


@dataclass
class ApplyReport:
    """What ``rescue apply`` did. ``status``: nothing | busy | done | timeout."""

    status: str
    decisions: list[RunnerAction] = field(default_factory=list)
    lock: LockResult | None = None
    passes: int = 0
    problems: list[str] = field(default_factory=list)  # requests that ended failed / needs_operator

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "passes": self.passes,
                "decisions": [d.to_dict() for d in self.decisions], "problems": self.problems}


@dataclass
class _PassResult:
    active: bool = False  # something will change soon without a person: --wait keeps going
    wake: datetime | None = None  # the earliest instant a pause ends


# ---- the runner ----------------------------------------------------------------------------

class Runner:
    """One environment's reconciler. Build it with the adapters (``operate.build_runner``) or fakes."""

    def __init__(self, *, store: AuditStore, source: Source, lock: Lock,
                 make_validator: Callable[[], Validator], make_executor: Callable[[], Executor],
                 clock: Clock | None = None, fault: FaultHook = no_faults,
                 say: Callable[[str], None] | None = None, event_id: Callable[[], str] | None = None,
                 heartbeat_seconds: float | None = None,
                 on_event: Callable[[AuditEvent, RequestState], None] | None = None) -> None:
        self.store, self.source, self.lock = store, source, lock
        self.on_event = on_event  # e.g. notifications; called after an event is pushed, never fatal
        self._make_validator, self._make_executor = make_validator, make_executor
        self._validator: Validator | None = None
        self._executor: Executor | None = None
        self.clock = clock or SystemClock()
        self.fault = fault
        self.say = say or (lambda line: None)
        self._event_id = event_id or (lambda: uuid.uuid4().hex[:12])
        self.dry_run = False
        self.running_long: tuple[float, float] | None = None  # (factor, minimum seconds); None: off
        self.report = ApplyReport("nothing")
        self._unrecorded = False  # a run may exist whose batch_submitted event is not pushed yet
        self._said: dict[str, str] = {}
        self._promised: list[Occupant] = []  # slots promised this pass to requests waiting ahead
        self._lineage: dict[str, frozenset[str]] = {}  # models of requests validated ahead of their turn
        # While the lock is held, a thread keeps its lease alive through long steps (a dbt parse of a
        # big project, an embedded batch running in this process).
        self.heartbeat_seconds = heartbeat_seconds
        self._renewing = threading.Lock()
        self._lost: BaseException | None = None
        self._stop = threading.Event()

    # -- entry point --

    def apply(self, *, wait: bool = False, dry_run: bool = False, poll_seconds: float = 5.0,
              timeout: float | None = None) -> ApplyReport:
        """One pass (or, with ``wait``, passes until nothing is runnable). See the module docstring."""
        self.dry_run = dry_run
        self.report = ApplyReport("nothing")
        self.store.refresh()
        approved, states = self.source.approved(), self._states()[0]
        self._reused_ids(approved, states)
        if not self._pending(approved, states):
            self.say("nothing to do: no approved request is pending")
            return self.report
        recovering = False
        if not dry_run:
            got = self.lock.acquire()
            self.report.lock = got
            if not got.acquired:
                self.report.status = "stuck" if got.stuck else "busy"
                self.say(f"{self.report.status}: {got.message}")
                if got.stuck:
                    self.report.problems.append(f"lock: {got.message}")
                return self.report
            recovering = got.recovered
            self._unrecorded = recovering  # until a pass completes, the dead runner's runs may be unrecorded
            if recovering:
                self.say(f"lock: {got.message}")
            self.fault("after_lock")
        started = time.monotonic()
        beat = self._start_heartbeat() if not dry_run else None
        try:
            first = True
            while True:
                if not first or not dry_run:
                    self.store.refresh()  # under the lock: the state may have moved since the first read
                first = False
                result = self._pass(recovering)
                recovering = self._unrecorded = False
                self.report.passes += 1
                self.report.status = "done"
                if not wait or dry_run or not result.active:
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    self.report.status = "timeout"
                    self.say(f"--wait: gave up after {timeout:g} s; requests are still in progress")
                    break
                pause = poll_seconds
                if result.wake is not None:
                    pause = min(pause, max(0.2, (result.wake - self.clock.now()).total_seconds()))
                self.clock.sleep(pause)
                self._renew()
        except BaseException as exc:
            self._stop_heartbeat(beat)
            # A run submitted (by us, or by the dead runner we took over from) but not recorded must
            # be found by the next runner: hand the lock over as from a dead runner (its lease ends
            # now), so the next runner, on any host, takes it over at once and looks for runs first.
            if not dry_run and not _is_crash(exc):
                if self._unrecorded:
                    self._abandon()
                else:
                    self.lock.release()
            raise
        self._stop_heartbeat(beat)
        if not dry_run:
            self.fault("before_lock_release")
            self.lock.release()
        return self.report

    # -- the lease --

    def _renew(self) -> None:
        """Renew the lock's lease if half of it is gone; raise if the heartbeat found it taken."""
        if self._lost is not None:
            raise self._lost
        with self._renewing:
            self.lock.renew()

    def _abandon(self) -> None:
        abandon = getattr(self.lock, "abandon", None)
        if abandon is None:
            return  # keep it: the next runner takes it over when the lease ends
        try:
            abandon()
        except Exception as exc:  # the original failure matters more
            self.say(f"lock: could not hand the lock over ({type(exc).__name__}: {exc}); the next runner "
                     "takes it over when its lease ends")

    def _fence(self) -> str:
        """Renew if due, then prove the lock is still ours right before a side effect."""
        self._renew()
        with self._renewing:
            return self.lock.fence()

    def _start_heartbeat(self) -> threading.Thread | None:
        if not self.heartbeat_seconds:
            return None
        self._stop.clear()
        period = self.heartbeat_seconds

        def beat() -> None:
            while not self._stop.wait(period):
                try:
                    with self._renewing:
                        self.lock.renew()
                except Exception as exc:  # the main thread raises it at its next step
                    self._lost = exc
                    return

        thread = threading.Thread(target=beat, name="rescue-lock-heartbeat", daemon=True)
        thread.start()
        return thread

    def _stop_heartbeat(self, thread: threading.Thread | None) -> None:
        if thread is not None:
            self._stop.set()
            thread.join()

    # -- one pass --

    def _reused_ids(self, approved: Sequence[Approved], states: Mapping[str, RequestState]) -> None:
        """Ids are used once: a finished request's id on the branch with other content never runs; say so."""
        for a in approved:
            s = states.get(a.request_id)
            # An old trail may not know what an unvalidated request held: then it cannot tell.
            if s is not None and s.terminal and s.content_hash not in (None, a.content_hash):
                self.report.problems.append(a.request_id)
                self.say(f"{a.request_id}: {a.path} is not run: request id {a.request_id} already ended "
                         f"{s.outcome}, and ids are used once; choose a new id (rename the file) in a new "
                         "pull request")

    def _pending(self, approved: Sequence[Approved], states: Mapping[str, RequestState]) -> list[str]:
        ids = [a.request_id for a in approved
               if a.request_id not in states or not states[a.request_id].terminal]
        on_branch = {a.request_id for a in approved}
        ids += [rid for rid, s in states.items() if rid not in on_branch and not s.terminal]
        return ids

    def _pass(self, recovering: bool) -> _PassResult:
        approved = {a.request_id: a for a in self.source.approved()}
        states, trails = self._states()
        todo = self._pending(list(approved.values()), states)

        now = self.clock.now()
        merge_order = {rid: _merge_order(approved.get(rid), states.get(rid)) for rid in todo}
        current = dict(states)
        result = _PassResult()
        self._promised, self._lineage = [], {}
        for rid in sorted(todo, key=lambda r: _urgency(approved.get(r), states.get(r), merge_order[r], now)):
            state = current.get(rid) or RequestState(rid)
            earlier = tuple(self._earlier(o, current.get(o), approved.get(o), now)
                            for o in sorted(todo, key=merge_order.__getitem__)
                            if merge_order[o] < merge_order[rid] and not _done(current.get(o)))
            r = self._advance(state, approved.get(rid), recovering, earlier, trails.get(rid, ()))
            current[rid] = r.state or state
            result.active = result.active or r.active
            if r.wake is not None and (result.wake is None or r.wake < result.wake):
                result.wake = r.wake
            if r.promised is not None:
                self._promised.append(r.promised)
        return result

    def _states(self) -> tuple[dict[str, RequestState], dict[str, tuple[str, ...]]]:
        """Every request's state from the trail, and why a request's trail cannot be trusted."""
        found = audit.examine_all(self.store.events(), getattr(self.store, "unreadable", ()))
        return ({rid: st for rid, (st, _) in found.items()},
                {rid: tuple(problems) for rid, (_, problems) in found.items() if problems})

    def _advance(self, state: RequestState, approved: Approved | None, recovering: bool,
                 earlier: tuple[Earlier, ...] = (), trail: tuple[str, ...] = ()) -> _Advance:
        rid = state.request_id
        view = View(state=state, approved=approved, now=self.clock.now(), recovering=recovering,
                    earlier=earlier, lookup=self._lookup_before_submit,
                    running_long=self.running_long, trail=trail)
        for _ in range(MAX_STEPS):
            step = reconcile.next_step(view)
            handler = _HANDLERS.get(type(step))
            if handler is None:
                raise AssertionError(f"unhandled step {step!r}")
            out = handler(self, view, step)
            if isinstance(out, _Advance):
                return out
            view = out
        raise RuntimeError(f"{rid}: no decision after {MAX_STEPS} steps (a rescue-runner bug)")

    # ---- one handler per step: questions answer and return the view; actions record, say what
    # they did, and return the view to continue with or an ``_Advance`` that ends the request's turn.

    def _on_validate(self, view: View, step: reconcile.Validate) -> View:
        assert view.approved is not None
        return replace(view, validation=self.validator.validate(view.approved, view.now, keep=step.keep))

    def _on_ask_run(self, view: View, step: reconcile.AskRun) -> View:
        return replace(view, run=self.executor.run_state(view.state, step.record))

    def _on_lookup(self, view: View, step: reconcile.Lookup) -> View:
        return replace(view, found=self.executor.find_run(view.state, step.batch, step.attempt))

    def _on_ask_contention(self, view: View, step: reconcile.AskContention) -> View:
        decision = self.executor.contention(self._ask(step))
        if self.dry_run:
            self._note(view.state.request_id, "queue",
                       f"queue for batch {step.batch.index}: {decision.summary}")
        return replace(view, contention=decision)

    def _on_record_validated(self, view: View, step: reconcile.RecordValidated) -> View:
        self.fault("after_validate_before_audit")
        validated = _validated_fields(view.approved, step.validation, view.state.attempt)
        view = self._record(view, audit.REQUEST_VALIDATED, validated)
        v = step.validation
        self._note(view.state.request_id, "validated", f"validated: {len(v.batches)} batch(es), fingerprint "
                                                       f"{reconcile._short(v.fingerprint)}"
                   + (f"; {len(v.warnings)} warning(s)" if v.warnings else ""))
        return view

    def _on_adopt(self, view: View, step: reconcile.Adopt) -> View:
        run = step.run
        view = self._record(view, audit.BATCH_SUBMITTED,
                            _submitted_fields(step.batch, step.attempt, run, adopted=True))
        self._note(view.state.request_id, "adopted",
                   f"batch {step.batch.index}/{len(view.state.plan)}: adopted "
                   f"flow run {run.flow_run_id} ({(run.state or '').lower()}), "
                   "submitted by a runner that died before recording it",
                   {"batch": step.batch.index, "flow_run_id": run.flow_run_id})
        return replace(view, run=run, found=NOT_ASKED, contention=None)

    def _on_submit(self, view: View, step: reconcile.Submit) -> View | _Advance:
        rid, n = view.state.request_id, len(view.state.plan)
        if self.dry_run:
            self._note(rid, "submit", f"would submit batch {step.batch.index}/{n} "
                                      f"({len(step.batch.models)} model(s)"
                                      + (", full refresh" if step.batch.full_refresh else "")
                                      + (", heavy" if step.batch.heavy else "") + ")",
                       {"batch": step.batch.index})
            return _Advance()
        token = self._fence()
        self.fault("before_submit")
        assert view.approved is not None and view.validation is not None
        self._unrecorded = True
        run = self.executor.submit(view.approved, view.validation, view.state, step.batch, step.attempt)
        self.fault("after_submit_before_audit")
        view = self._record(view, audit.BATCH_SUBMITTED,
                            {**_submitted_fields(step.batch, step.attempt, run, adopted=False),
                             "lock": token})
        self._unrecorded = False
        where = f" {run.url}" if run.url else ""
        self._note(rid, "submitted",
                   f"batch {step.batch.index}/{n} submitted: flow run {run.flow_run_id}{where}",
                   {"batch": step.batch.index, "flow_run_id": run.flow_run_id, "url": run.url})
        return replace(view, run=run, found=NOT_ASKED, contention=None)

    def _on_record_running(self, view: View, step: reconcile.RecordRunning) -> View:
        rec = step.record
        view = self._record(view, audit.BATCH_RUNNING, {"batch": rec.index, "attempt": rec.attempt,
                                                        "flow_run_id": rec.flow_run_id})
        self._note(view.state.request_id, "running", f"batch {rec.index}/{len(view.state.plan)} running "
                                                     f"(flow run {rec.flow_run_id})")
        return view

    def _on_record_finished(self, view: View, step: reconcile.RecordFinished) -> View:
        self.fault("after_run_final_before_audit")
        view = self._record(view, audit.BATCH_FINISHED, _finished_fields(step))
        got = step.run.counts if step.run else {}
        counts = ", ".join(f"{k} {v}" for k, v in sorted(got.items()))
        self._note(view.state.request_id, "batch_finished",
                   f"batch {step.record.index}/{len(view.state.plan)} {step.state}"
                   + (f" ({counts})" if counts else "") + (f": {step.reason}" if step.reason else ""),
                   {"batch": step.record.index, "state": step.state})
        return replace(view, run=NOT_ASKED, found=NOT_ASKED, contention=None, now=self.clock.now())

    def _on_finish(self, view: View, step: reconcile.Finish) -> _Advance:
        self.fault("before_request_finished")
        s, rid = view.state, view.state.request_id
        finished: dict[str, Any] = {
            "outcome": step.outcome, "reason": step.reason, "batches_completed": s.completed,
            "batches_total": len(s.plan)}
        if s.content_hash is None and view.approved is not None:
            finished["content_hash"] = view.approved.content_hash
        view = self._record(view, audit.REQUEST_FINISHED, finished)
        self._note(rid, step.outcome, f"{step.outcome}: {step.reason}")
        if step.outcome in (audit.FAILED, audit.NEEDS_OPERATOR):
            self.report.problems.append(rid)
        return _Advance(state=view.state)

    def _on_wait(self, view: View, step: reconcile.Wait) -> _Advance:
        s, rid = view.state, view.state.request_id
        if (s.waiting_kind, s.waiting_batch) != (step.kind, step.batch):
            fields: dict[str, Any] = {"kind": step.kind, "reason": step.reason, "batch": step.batch}
            if step.until is not None:
                fields["until"] = _iso(step.until)
            view = self._record(view, audit.WAITING, fields)
        self._note(rid, "waiting", f"waiting ({step.kind}): {step.reason}", {"kind": step.kind})
        queue = step.kind == audit.QUEUE_BUSY
        return _Advance(active=step.kind in (audit.PAUSE, audit.QUEUE_BUSY, audit.AFTER_REQUEST),
                        wake=step.until if step.kind == audit.PAUSE else None, state=view.state,
                        promised=_promise(rid, view.contention) if queue else None)

    def _on_idle(self, view: View, step: reconcile.Idle) -> _Advance:
        if step.active:
            self._note(view.state.request_id, "idle", step.reason)
        return _Advance(active=step.active, state=view.state)

    def _record_running_long(self, view: View, step: reconcile.RecordRunningLong) -> View:
        rec = step.record
        minutes = round(step.seconds / 60, 1)
        view = self._record(view, audit.BATCH_RUNNING_LONG, {
            "batch": rec.index, "attempt": rec.attempt, "flow_run_id": rec.flow_run_id, "minutes": minutes,
            "estimate_seconds": step.estimate_seconds})
        self._note(view.state.request_id, "running_long",
                   f"batch {rec.index}/{len(view.state.plan)} running long: {minutes:g} min, estimate "
                   f"{step.estimate_seconds / 60:.1f} min (flow run {rec.flow_run_id})")
        return view

    # -- helpers --

    def _earlier(self, rid: str, s: RequestState | None, a: Approved | None, now: datetime) -> Earlier:
        """A request merged earlier, with its models: from the trail, or (not validated yet, later in
        this pass's order) from validating it now without recording anything."""
        if s is not None and s.validated:
            return Earlier(rid, frozenset(m for b in s.plan for m in b.models))
        if a is None:
            return Earlier(rid, frozenset())  # gone before it started: it will not run
        if rid not in self._lineage:
            v = self.validator.validate(a, now)
            self._lineage[rid] = frozenset(m for b in v.batches for m in b.models) if v.ok else frozenset()
        return Earlier(rid, self._lineage[rid])

    def _ask(self, step: reconcile.AskContention) -> Ask:
        b = step.batch
        return Ask(b.estimated_seconds, b.heavy, step.window_end, step.timezone, tuple(self._promised),
                   asked_at=self.clock.now())

    @property
    def validator(self) -> Validator:
        if self._validator is None:
            self._validator = self._make_validator()
        return self._validator

    @property
    def _lookup_before_submit(self) -> bool:
        return bool(getattr(self.executor, "lookup_before_submit", True))

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = self._make_executor()
        return self._executor

    def _record(self, view: View, type_: str, fields: Mapping[str, Any]) -> View:
        s = view.state
        event = AuditEvent(type=type_, request_id=s.request_id, at=self.clock.now(), seq=s.last_seq + 1,
                           event_id=self._event_id(), fields=dict(fields), runner=self.lock.holder,
                           prev=s.last_digest)
        state = audit.apply_event(s, event)
        if not self.dry_run:
            self._renew()
            self.store.append(event)
            if self.on_event is not None:
                try:
                    self.on_event(event, state)
                except Exception as exc:  # a hook (a webhook) must never stop the runner
                    self.say(f"{s.request_id}: event hook failed: {type(exc).__name__}: {exc}")
        return replace(view, state=state)

    def _note(self, rid: str, action: str, message: str, data: Mapping[str, Any] | None = None) -> None:
        prefix = "(dry run) " if self.dry_run and not message.startswith("would") else ""
        self.report.decisions.append(RunnerAction(rid, action, message, dict(data or {})))
        if action in ("waiting", "idle") and self._said.get(rid) == message:
            return  # --wait: say it once, not on every pass
        self._said[rid] = message
        self.say(f"{rid}: {prefix}{message}")

# Which handler answers each step of ``reconcile.next_step`` (a step type missing here is a bug).
_HANDLERS: dict[type, Callable[[Runner, View, Any], View | _Advance]] = {
    reconcile.Validate: Runner._on_validate,
    reconcile.AskRun: Runner._on_ask_run,
    reconcile.Lookup: Runner._on_lookup,
    reconcile.AskContention: Runner._on_ask_contention,
    reconcile.RecordValidated: Runner._on_record_validated,
    reconcile.Adopt: Runner._on_adopt,
    reconcile.Submit: Runner._on_submit,
    reconcile.RecordRunning: Runner._on_record_running,
    reconcile.RecordRunningLong: Runner._record_running_long,
    reconcile.RecordFinished: Runner._on_record_finished,
    reconcile.Finish: Runner._on_finish,
    reconcile.Wait: Runner._on_wait,
    reconcile.Idle: Runner._on_idle,
}



@dataclass
class _Advance:
    active: bool = False
    wake: datetime | None = None
    state: RequestState | None = None  # the request as this pass left it
    promised: Occupant | None = None  # the slots a queue wait expects to take at its next fit


# ---- the order of requests in a pass -------------------------------------------------------

def _merge_order(a: Approved | None, s: RequestState | None) -> int:
    if a is not None:
        return a.merge_order
    return s.merge_order if s is not None and s.merge_order is not None else 1 << 30


def _urgency(a: Approved | None, s: RequestState | None, merged: int,
             now: datetime) -> tuple[int, datetime, int]:
    """Priority first; then a request whose window closes soonest; then merge order."""
    from .windows import closes_at

    prio = a.priority if a is not None else (s.priority if s else 0)
    window = a.request.window if a is not None and a.request is not None else None
    closes = closes_at(window, now) if window is not None else None
    return (-prio, closes or datetime.max.replace(tzinfo=UTC), merged)


def _done(s: RequestState | None) -> bool:
    return s is not None and s.terminal


def _promise(rid: str, decision: Any) -> Occupant | None:
    """A queue wait with a next fit keeps those slots from requests after it in the order (backfill)."""
    fit, duration = getattr(decision, "next_fit", None), getattr(decision, "duration", None)
    if fit is None or duration is None:
        return None
    return Occupant(rid, fit, fit + duration, decision.needed_slots or 1, kind="reserved")


def _is_crash(exc: BaseException) -> bool:
    from .faults import Crash

    return isinstance(exc, Crash)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _validated_fields(approved: Approved | None, v: Revalidation, attempt: int) -> dict[str, Any]:
    assert approved is not None
    req = approved.request
    return {
        "path": approved.path, "content_hash": approved.content_hash, "fingerprint": v.fingerprint,
        "commit": approved.commit, "approved_sha": approved.approved_sha or None,
        "merge_order": approved.merge_order, "priority": approved.priority,
        "requested_by": req.requested_by if req else None, "ticket": req.ticket if req else None,
        "reason": req.reason if req else None, "batches": [_batch_fields(b) for b in v.batches],
        "pause_seconds": v.pause_seconds, "warnings": list(v.warnings), "overrides": list(v.overrides),
        "attempt": attempt, "policy": v.policy, "digests": dict(v.digests),
        "upstream_digest": v.upstream_digest, "event_time": list(v.event_time) if v.event_time else None,
    }


def _batch_fields(b: PlannedBatch) -> dict[str, Any]:
    d = b.to_dict()
    return {k: d[k] for k in ("index", "models", "full_refresh", "heavy", "estimated_seconds")}


def _submitted_fields(batch: PlannedBatch, attempt: int, run: RunView, *, adopted: bool) -> dict[str, Any]:
    return {"batch": batch.index, "attempt": attempt, "flow_run_id": run.flow_run_id, "url": run.url,
            "name": run.name, "idempotency_key": run.idempotency_key, "mode": run.mode, "adopted": adopted,
            "state": run.state, "models": len(batch.models), "commit": run.commit}


def _finished_fields(step: reconcile.RecordFinished) -> dict[str, Any]:
    run = step.run
    rec = step.record
    return {"batch": rec.index, "attempt": rec.attempt, "flow_run_id": rec.flow_run_id, "state": step.state,
            "state_name": run.state_name if run else None,
            "counts": dict(run.counts) if run else {}, "failed_nodes": list(run.failed_nodes) if run else [],
            "reason": step.reason, **_left_behind(run)}


def _left_behind(run: RunView | None) -> dict[str, Any]:
    """What a run that did not complete left in the warehouse (recorded only when there is something)."""
    if run is None or run.state == "COMPLETED":
        return {}
    out: dict[str, Any] = {}
    if run.error:
        out["error"] = run.error
    if run.rebuilt:
        out["rebuilt"] = list(run.rebuilt)
    if run.skipped:
        out["skipped"] = list(run.skipped)
    return out
