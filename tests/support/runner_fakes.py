"""In-memory stand-ins for the runner's outside world (for the model-based test).

They keep the properties the runner relies on and nothing more: the store is durable once
``append`` returns; the lock is a compare-and-set with a lease; the executor is a Prefect
*without* idempotency (every ``submit`` creates a run), so a double submission cannot hide.
A crash is ``faults.Crash`` raised from a fault point: the runner object is dropped, its
lock stays held by a dead holder, the next runner takes it over (as ``GitLock`` does
for a holder whose process is gone).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rescue_runner import audit
from rescue_runner.adapters.git_audit import LockLost
from rescue_runner.audit import AuditEvent, BatchRecord, RequestState
from rescue_runner.contention import Ask, Decision
from rescue_runner.errors import RescueError
from rescue_runner.faults import Crash
from rescue_runner.model import DailyWindow, PlannedBatch, Request, Window
from rescue_runner.reconcile import MISSING, Approved, Revalidation, RunView
from rescue_runner.runner import LockResult

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class PushFailed(RescueError):
    """The remote refused every push (e.g. it was down)."""


class FakeStore:
    """``remote`` is the audit branch; each runner process has its own view of it.
    ``fail_pushes`` (shared) holds event types: the next push of an event of such a type fails
    with an error (the remote is down), once per entry."""

    def __init__(self, remote: list[AuditEvent], fault: Any, fail_pushes: list[str] | None = None) -> None:
        self.remote, self.fault = remote, fault
        self.fail_pushes = fail_pushes if fail_pushes is not None else []
        self._view: list[AuditEvent] = []

    def refresh(self) -> None:
        self._view = list(self.remote)

    def events(self) -> list[AuditEvent]:
        return list(self._view)

    def append(self, event: AuditEvent) -> None:
        self.fault("before_audit_push")
        if event.type in self.fail_pushes:
            self.fail_pushes.remove(event.type)
            raise PushFailed("git push failed")
        self.remote.append(event)
        self._view.append(event)
        self.fault("after_audit_push")


@dataclass
class LockState:
    holder: str | None = None
    expires: datetime | None = None
    alive: bool = False  # the holder's process still runs


class FakeLock:
    def __init__(self, state: LockState, holder: str, clock: ManualClock, lease: float = 600.0) -> None:
        self.state, self.holder, self.clock, self.lease = state, holder, clock, lease
        self.mine = False

    def acquire(self) -> LockResult:
        s = self.state
        now = self.clock.now()
        if s.holder is not None and s.alive and s.expires is not None and now < s.expires:
            return LockResult(False, s.holder, s.expires, message=f"{s.holder} holds it")
        recovered = s.holder is not None  # never released: its holder died (or its lease ran out)
        s.holder, s.expires, s.alive = self.holder, now + timedelta(seconds=self.lease), True
        self.mine = True
        return LockResult(True, self.holder, s.expires, recovered=recovered, message="taken")

    def renew(self, *, force: bool = False) -> None:
        assert self.state.holder == self.holder, "renewing a lock we do not hold"
        self.state.expires = self.clock.now() + timedelta(seconds=self.lease)

    def abandon(self) -> None:
        if self.state.holder == self.holder:
            self.state.alive = False  # left for recovery: the next runner takes it over at once
        self.mine = False

    def fence(self) -> str:
        if self.state.holder != self.holder:
            raise LockLost(f"{self.holder} lost the lock to {self.state.holder}")
        return f"token-{self.holder}"

    def release(self) -> None:
        if self.state.holder == self.holder:
            self.state.holder, self.state.expires, self.state.alive = None, None, False
        self.mine = False


@dataclass
class Spec:
    """A request on the protected branch (what the fake source and validator know)."""

    rid: str
    batches: int
    pause_minutes: float = 0.0
    priority: int = 0
    version: int = 1  # bumping it changes the content: the fingerprint drifts
    window_hours: tuple[int, int] | None = None  # daily window in UTC
    expires: datetime | None = None
    order: int = 0
    heavy: bool = False
    upstream: tuple[str, ...] = ()  # models its models depend on (e.g. another request's)

    def content(self) -> bytes:
        return f"{self.rid}:{self.batches}:{self.pause_minutes}:{self.version}:{self.window_hours}".encode()


class FakeSource:
    def __init__(self, specs: dict[str, Spec], clock: ManualClock) -> None:
        self.specs, self.clock = specs, clock

    def approved(self) -> list[Approved]:
        out = []
        for s in self.specs.values():
            window = None
            if s.window_hours is not None:
                a, b = s.window_hours
                window = Window(daily=DailyWindow(_t(a), _t(b)), timezone="UTC")
            req = Request(id=s.rid, path=f"rescues/{s.rid}.yaml", version=1, reason="a reason long enough",
                          requested_by="someone", select=("x",), window=window, priority=s.priority,
                          expires=s.expires)
            content = s.content()
            expired = "expired" if s.expires is not None and self.clock.now() >= s.expires else None
            out.append(Approved(s.rid, req.path, content, "sha256:" + hashlib.sha256(content).hexdigest(),
                                s.order, "c0ffee", req, expired))
        return out


def _t(hour: int) -> Any:
    from datetime import time

    return time(hour % 24, 0)


class FakeValidator:
    def __init__(self, specs: dict[str, Spec]) -> None:
        self.specs = specs
        self.calls = 0

    def validate(self, approved: Approved, now: datetime, *, keep: Any = None) -> Revalidation:
        self.calls += 1
        s = self.specs[approved.request_id]
        batches = tuple(PlannedBatch(i, (f"model.p.{s.rid}_{i}",), heavy=s.heavy)
                        for i in range(1, s.batches + 1))
        return Revalidation(ok=True, fingerprint="fp-" + approved.content_hash, batches=batches,
                          pause_seconds=s.pause_minutes * 60, upstream=frozenset(s.upstream))


@dataclass
class Run:
    id: str
    rid: str
    batch: int
    attempt: int
    key: str
    state: str = "SCHEDULED"
    created_at: datetime | None = None


@dataclass
class FakePrefect:
    """Shared by all runner processes: the server."""

    runs: dict[str, Run] = field(default_factory=dict)
    submits: dict[tuple[str, int, int], int] = field(default_factory=dict)
    queue_busy: bool = False
    heavy_waits: bool = False  # only heavy batches find the queue too busy
    asks: list[Ask] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    audit: list[AuditEvent] = field(default_factory=list)  # to check order at submission
    clock: ManualClock | None = None
    created: int = 0
    lookup_before_submit: bool = True  # False: as the embedded executor (lookups only when recovering)


class FakeExecutor:
    mode = "server"

    def __init__(self, prefect: FakePrefect) -> None:
        self.p = prefect
        self.lookup_before_submit = prefect.lookup_before_submit

    @staticmethod
    def key(state: RequestState, batch: PlannedBatch, attempt: int) -> str:
        return f"{state.request_id}|{state.content_hash}|{batch.index}|{attempt}"

    def find_run(self, state: RequestState, batch: PlannedBatch, attempt: int) -> RunView | None:
        key = self.key(state, batch, attempt)
        for r in self.p.runs.values():
            if r.key == key:
                return self._view(r)
        return None

    def submit(self, approved: Approved, validation: Revalidation, state: RequestState, batch: PlannedBatch,
               attempt: int) -> RunView:
        k = (state.request_id, batch.index, attempt)
        self.p.submits[k] = self.p.submits.get(k, 0) + 1
        self._check_order(state.request_id, batch.index, validation.pause_seconds)
        self.p.created += 1
        run = Run(f"run-{self.p.created:04d}", state.request_id, batch.index, attempt,
                  self.key(state, batch, attempt), created_at=self.p.clock.now() if self.p.clock else None)
        self.p.runs[run.id] = run
        return self._view(run)

    def run_state(self, state: RequestState, record: BatchRecord) -> RunView | None:
        run = self.p.runs.get(record.flow_run_id or "")
        if run is None:
            return RunView(record.flow_run_id or "", MISSING, final=True)
        return self._view(run)

    def contention(self, ask: Ask) -> Decision:
        self.p.asks.append(ask)
        if self.p.queue_busy or (ask.heavy and self.p.heavy_waits):
            return Decision(False, ("wait: 5/5 slots busy",))
        return Decision(True, ("go: 0/5 slots busy",))

    def _view(self, r: Run) -> RunView:
        final = r.state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
        return RunView(r.id, r.state, final=final, url=f"http://prefect/runs/{r.id}",
                       name=f"{r.rid}-batch-{r.batch}", state_name=r.state.title(), idempotency_key=r.key)

    def _check_order(self, rid: str, index: int, pause_seconds: float) -> None:
        """Batch order: every earlier batch completed (by a real run) and its pause is over."""
        mine = [r for r in self.p.runs.values() if r.rid == rid]
        if any(r.state not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in mine):
            self.p.violations.append(f"{rid} batch {index} submitted while another batch is in flight")
        for earlier in range(1, index):
            if not any(r.batch == earlier and r.state == "COMPLETED" for r in mine):
                self.p.violations.append(f"{rid} batch {index} submitted before batch {earlier} completed")
        if index > 1 and pause_seconds > 0 and self.p.clock is not None:
            done = [e for e in self.p.audit if e.request_id == rid and e.type == audit.BATCH_FINISHED
                    and e.fields.get("batch") == index - 1 and e.fields.get("state") == audit.B_COMPLETED]
            if done and self.p.clock.now() < done[-1].at + timedelta(seconds=pause_seconds):
                self.p.violations.append(f"{rid} batch {index} submitted during the pause")


def crash_at(point: str, nth: int = 1) -> Any:
    """A fault hook raising Crash at the n-th hit of ``point``."""
    hits: dict[str, int] = {}

    def hook(p: str) -> None:
        hits[p] = hits.get(p, 0) + 1
        if p == point and hits[p] == nth:
            raise Crash(p)

    return hook
