"""Use cases of the runner: ``apply``, ``status``, ``log``, ``retry``, wired to git, dbt and Prefect.

The local ``rescue.yaml`` only says where the audit trail lives (``audit.remote``,
``audit.protected_branch``, ``audit.branch``); everything a request is judged by comes
from the protected branch. dbt and Prefect are imported only when some request needs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import audit
from .audit import AuditEvent, RequestState
from .config import Config, load_config
from .errors import RescueError
from .faults import FaultHook, FaultPoints
from .reconcile import Approved
from .runner import ApplyReport, Clock, OffsetClock, Runner, SystemClock

DEFAULT_ENV = "default"
DEFAULT_LEASE_SECONDS = 600.0


@dataclass
class Wiring:
    """The adapters of one runner, built from the local configuration."""

    config: Config
    remote: Any
    store: Any
    source: Any
    clock: Clock


def make_clock(now: datetime | None) -> Clock:
    """``--now`` / RESCUE_NOW: an injected start that then advances in real time."""
    return OffsetClock(now) if now is not None else SystemClock()


def wire(config_path: Path | None, cwd: Path, *, clock: Clock, fault: FaultHook | None = None,
         holder: str = "", say: Callable[[str], None] = lambda line: None) -> Wiring:
    from .adapters.git_audit import GitAuditStore, GitRemote
    from .adapters.git_branch import GitApprovedSource

    cfg = load_config(config_path, cwd=cwd)
    remote = GitRemote(cfg.root, cfg.audit.remote)
    store = GitAuditStore(remote, cfg.audit.branch, also_fetch=[cfg.audit.protected_branch],
                          fault=fault or (lambda point: None), holder=holder)
    source = GitApprovedSource(remote, store, cfg.audit.protected_branch, cwd=cwd, config_path=config_path,
                               now=clock.now, say=say)
    return Wiring(cfg, remote, store, source, clock)


def apply(config_path: Path | None, cwd: Path, *, wait: bool = False, dry_run: bool = False,
          now: datetime | None = None, env: str = DEFAULT_ENV, lease_seconds: float = DEFAULT_LEASE_SECONDS,
          poll_seconds: float = 5.0, timeout: float | None = None,
          say: Callable[[str], None] = lambda line: None, fault: FaultHook | None = None) -> ApplyReport:
    """``rescue apply``: see ``runner.Runner.apply``."""
    from .adapters.git_audit import GitLock, new_holder_id

    clock = make_clock(now)
    fault = fault or FaultPoints()
    holder = new_holder_id()
    w = wire(config_path, cwd, clock=clock, fault=fault, holder=holder, say=say)
    # The lease is judged by this machine's clock, never by an injected one: a runner started with
    # another "now" must not think a live lock expired (or keep a dead one alive).
    lock = GitLock(w.remote, env, lease_seconds=lease_seconds, holder=holder)

    def make_validator() -> Any:
        from . import execution
        from .approvals import BranchValidator

        if not dry_run:
            # Embedded mode: Prefect's temporary server starts in the background while dbt parses.
            execution.warm_up(w.source.config())
        return BranchValidator(w.source.config)

    def make_executor() -> Any:
        from .executors import make_executor as pick

        return pick(w.source.config())

    def alert(event: AuditEvent, state: RequestState) -> None:
        from . import notify

        note = notify.for_audit_event(w.config.notifications, event.type, event.fields, state, event.at)
        if note is not None:
            notify.notify(w.config.notifications, note)

    runner = Runner(store=w.store, source=w.source, lock=lock, make_validator=make_validator,
                    make_executor=make_executor, clock=clock, fault=fault, say=say,
                    heartbeat_seconds=min(30.0, lease_seconds / 6),
                    on_event=alert if w.config.notifications is not None else None)
    live = w.config.liveness
    runner.running_long = (live.running_long_factor, live.running_long_minimum_minutes * 60)
    report = runner.apply(wait=wait, dry_run=dry_run, poll_seconds=poll_seconds, timeout=timeout)
    if report.status == "stuck" and report.lock is not None:
        _alert_stuck_lock(w.config, env, report.lock.message, clock.now())
    return report


def _alert_stuck_lock(config: Config, env: str, message: str, at: datetime) -> None:
    """A lock held by one runner for many leases: nothing moves, so people must hear of it."""
    from . import notify

    note = notify.NotifyEvent(kind=audit.NEEDS_OPERATOR, request_id=f"runner lock {env}", state="stuck",
                              detail=message, at=at)
    notify.notify(config.notifications, note)


# ---- status and log (git only: no Prefect, no dbt) -----------------------------------------

@dataclass
class RequestStatus:
    """One line of ``rescue status``."""

    id: str
    state: str
    reason: str | None
    batches: list[dict[str, Any]] = field(default_factory=list)
    detail: RequestState | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "reason": self.reason, "batches": self.batches}


@dataclass
class StatusReport:
    """``rescue status``: every request, plus what the repository should know about.

    ``stale_on_main``: models changed on the protected branch whose tables still hold the
    old logic, one mapping each (``model``, and when known ``commit``, ``changed_at``,
    ``downstream`` (a count), ``hint``); rendered by every status format that shows it.
    """

    requests: list[RequestStatus]
    problems: list[str] = field(default_factory=list)  # audit trail inconsistencies
    as_of: datetime | None = None
    stale_on_main: list[Mapping[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": [r.to_dict() for r in self.requests]}


def _read(config_path: Path | None, cwd: Path, now: datetime | None) -> tuple[Wiring, list[AuditEvent]]:
    w = wire(config_path, cwd, clock=make_clock(now))
    w.store.refresh()
    return w, w.store.events()


def status(config_path: Path | None, cwd: Path, request_id: str | None = None, *,
           now: datetime | None = None) -> StatusReport:
    """Every request the runner knows or will pick up, from the audit branch and the protected branch."""
    w, events = _read(config_path, cwd, now)
    examined = audit.examine_all(events, getattr(w.store, "unreadable", ()))
    states = {rid: st for rid, (st, _) in examined.items()}
    approved: dict[str, Approved] = {}
    if w.store.tips.get(w.config.audit.protected_branch):
        approved = {a.request_id: a for a in w.source.approved()}
    ids = sorted(set(states) | set(approved), key=lambda rid: _order_key(rid, states, approved))
    if request_id is not None:
        if request_id not in ids:
            raise RescueError(f"no request {request_id!r} on {w.config.audit.protected_branch} "
                              "or in the audit trail", hint="`rescue status` lists them all")
        ids = [request_id]
    out = []
    for rid in ids:
        s = states.get(rid) or RequestState(rid)
        state, reason = s.status, s.reason
        if rid not in states:
            a = approved[rid]
            state, reason = "pending", a.expired or "approved; not yet picked up by the runner"
        elif rid not in approved and not s.terminal:
            reason = (reason + "; " if reason else "") + "removed from the protected branch"
        out.append(RequestStatus(rid, state, reason, _batches(s), s))
    problems = [f"{rid}: {p}" for rid, (_, ps) in examined.items() if request_id in (None, rid) for p in ps]
    return StatusReport(out, problems, as_of=w.clock.now())


def _order_key(rid: str, states: dict[str, RequestState],
               approved: dict[str, Approved]) -> tuple[int, int, str]:
    a, s = approved.get(rid), states.get(rid)
    prio = a.priority if a else (s.priority if s else 0)
    merged = a.merge_order if a else (s.merge_order if s and s.merge_order is not None else 1 << 30)
    return (-prio, merged, rid)


def _batches(s: RequestState) -> list[dict[str, Any]]:
    latest: dict[int, audit.BatchRecord] = {}
    for rec in s.history:
        latest[rec.index] = rec
    out = []
    for b in s.plan:
        found = latest.get(b.index)
        out.append({"index": b.index, "flow_run_id": found.flow_run_id if found else None,
                    "state": found.state if found else "pending", "url": found.url if found else None,
                    "attempt": found.attempt if found else None, "models": len(b.models)})
    return out


def log(config_path: Path | None, cwd: Path, request_id: str | None = None) -> list[AuditEvent]:
    """The audit trail (one request or all), oldest first."""
    _, events = _read(config_path, cwd, None)
    if request_id is not None:
        events = [e for e in events if e.request_id == request_id]
        if not events:
            raise RescueError(f"no audit events for {request_id!r}", hint="`rescue log` shows every request")
        return audit.order(events)
    return audit.timeline(events)


# ---- operator action -----------------------------------------------------------------------

def retry(config_path: Path | None, cwd: Path, request_id: str, *, by: str, reason: str,
          env: str = DEFAULT_ENV, now: datetime | None = None, accept_plan: bool = False) -> AuditEvent:
    """Reopen a failed / needs-operator request with the next attempt number (completed batches stay done).

    ``accept_plan``: the plan re-derived at the next pass becomes the approved one and runs whole
    (after plan drift). Takes the environment's lock like a runner, so it never races a pass.
    """
    from .adapters.git_audit import GitLock, new_holder_id

    if not by.strip() or len(reason.strip()) < 10:
        raise RescueError("say who you are (--by) and why (--reason, at least 10 characters)")
    clock = make_clock(now)
    holder = new_holder_id()
    w = wire(config_path, cwd, clock=clock, holder=holder)
    lock = GitLock(w.remote, env, holder=holder)
    got = lock.acquire()
    if not got.acquired:
        raise RescueError(f"busy: {got.message}", hint="try again when the runner's pass is over")
    try:
        w.store.refresh()
        evs = [e for e in w.store.events() if e.request_id == request_id]
        s, _ = audit.examine(request_id, evs)
        if not evs:
            raise RescueError(f"no audit events for {request_id!r}: nothing to retry")
        if s.outcome not in (audit.FAILED, audit.NEEDS_OPERATOR):
            raise RescueError(f"{request_id} is {s.status}; only failed or needs_operator requests "
                              "can be retried")
        fields: dict[str, Any] = {"attempt": s.attempt + 1, "by": by.strip(), "reason": reason.strip()}
        if accept_plan:
            fields["accept_plan"] = True
        event = AuditEvent(audit.OPERATOR_RETRY, request_id, clock.now(), s.last_seq + 1,
                           uuid.uuid4().hex[:12], fields, holder, prev=s.last_digest)
        w.store.append(event)
        return event
    finally:
        lock.release()
