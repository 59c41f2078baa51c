"""The runner's commands: ``apply``, ``status``, ``log``, ``retry``, ``cancel``, ``close``.

This is where the runner's ports (``runner.py``) are wired to git, dbt and Prefect (``wire``).

The local ``rescue.yaml`` only says where the audit trail lives (``audit.remote``,
``audit.protected_branch``, ``audit.branch``); everything a request is judged by comes
from the protected branch. dbt and Prefect are imported only when some request needs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import audit
from .audit import AuditEvent, RequestState
from .config import Config, load_config
from .errors import RescueError
from .faults import FaultHook, FaultPoints
from .reconcile import Approved
from .results import RequestStatus, StatusReport
from .runner import ApplyReport, Clock, OffsetClock, Runner, SystemClock, Wiring

if TYPE_CHECKING:
    from .adapters.git_branch import GitApprovedSource

DEFAULT_ENV = "default"
DEFAULT_LEASE_SECONDS = 600.0


def make_clock(now: datetime | None) -> Clock:
    """``--now`` / RESCUE_NOW: an injected start that then advances in real time."""
    return OffsetClock(now) if now is not None else SystemClock()


def wire(config_path: Path | None, cwd: Path, *, clock: Clock, fault: FaultHook | None = None,
         holder: str = "", say: Callable[[str], None] = lambda line: None) -> Wiring:
    from .adapters.git_audit import GitAuditStore, GitRemote

    cfg = load_config(config_path, cwd=cwd)
    remote = GitRemote(cfg.root, cfg.audit.remote)
    store = GitAuditStore(remote, cfg.audit.branch, also_fetch=[cfg.audit.protected_branch],
                          fault=fault or (lambda point: None), holder=holder)
    source = approved_source(remote, store, cfg.audit.protected_branch, cwd=cwd, config_path=config_path,
                             now=clock.now, say=say)
    return Wiring(cfg, remote, store, source, clock)


def approved_source(remote: Any, store: Any, branch: str, *, cwd: Path, config_path: Path | None,
                    now: Callable[[], datetime],
                    say: Callable[[str], None] = lambda line: None) -> GitApprovedSource:
    """The approved requests on ``branch`` (a ``GitApprovedSource``), judged by that branch's own
    rescue.yaml (``trusted``) through the one request pipeline (``pipeline``)."""
    from .adapters.git_branch import GitApprovedSource
    from .pipeline import judge_approved
    from .trusted import load_base_config

    def config_at(sha: str, path: Path) -> Config:
        return load_base_config(sha, path, cwd=cwd, dbt_from_ref=False)[0]

    return GitApprovedSource(remote, store, branch, cwd=cwd, config_path=config_path, now=now,
                             config_at=config_at, judge=judge_approved, say=say)


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
        from .revalidation import BranchValidator

        return BranchValidator(w.source.config, commit=lambda: w.source.tip, root=w.remote.root)

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
    # The post-merge guard first, in a fresh process: a dbt parse after an embedded dbt build in
    # the same process does not reproduce production's manifest. A request running now is pending,
    # so it covers its models either way.
    from .postmerge import run_guard

    w.store.refresh()
    run_guard(w, clock.now(), dry_run=dry_run, say=say)
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


def runs_dir(config_path: Path | None, cwd: Path) -> Path | str:
    """Where flow runs leave their artifacts (``prefect.run_results_storage_path``: a local folder
    or a storage URL, shown without credentials)."""
    from .storage import display

    cfg = load_config(config_path, cwd=cwd)
    where = cfg.prefect.run_results_storage_path or cfg.root / ".rescue" / "runs"
    return display(where) if isinstance(where, str) else where


# ---- status and log (git only: no Prefect, no dbt) -----------------------------------------

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
        request_id = resolve_id(request_id, ids,
                                where=f" on {w.config.audit.protected_branch} or in the audit trail")
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
    stale: list[Mapping[str, Any]] = []
    if request_id is None:
        from .adapters.git_guard import GuardRecords

        stale = list(GuardRecords(w.remote, w.store).stale())  # as the last runner pass found it
    return StatusReport(out, problems, as_of=w.clock.now(), stale_on_main=stale)


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
        request_id = resolve_id(request_id, {e.request_id for e in events}, where=" in the audit trail")
        return audit.order(e for e in events if e.request_id == request_id)
    return audit.timeline(events)


# ---- operator action -----------------------------------------------------------------------

def complete_ids(config_path: Path | None, cwd: Path, incomplete: str) -> list[str]:
    """Request ids starting with ``incomplete``, from local files only (shell completion: no fetch)."""
    from .adapters.git_audit import local_request_ids

    try:
        cfg = load_config(config_path, cwd=cwd)
    except RescueError:
        return []
    ids = set(local_request_ids(cfg.root, cfg.audit.remote, cfg.audit.branch))
    if cfg.requests_dir.is_dir():
        ids |= {p.stem for p in cfg.requests_dir.glob("*.yaml")}
    return sorted(rid for rid in ids if rid.startswith(incomplete))


def resolve_id(given: str, known: Iterable[str], *, where: str = "") -> str:
    """The request id ``given`` names: itself, or the one known id it is a unique prefix of."""
    ids = sorted(set(known))
    if given in ids:
        return given
    matches = [rid for rid in ids if rid.startswith(given)] if given else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise RescueError(f"{given!r} matches {len(matches)} requests: {shown}",
                          hint="type more of the id")
    raise RescueError(f"no request {given!r}{where}", hint="`rescue status` lists them all")


def _operator_action(config_path: Path | None, cwd: Path, request_id: str, *, by: str, reason: str,
                     env: str, now: datetime | None,
                     decide: Callable[[Wiring, RequestState], tuple[str, dict[str, Any]]]) -> AuditEvent:
    """Take the lock like a runner, find the request (id or unique prefix), record what ``decide`` says."""
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
        events = w.store.events()
        known = {e.request_id for e in events}
        if w.store.tips.get(w.config.audit.protected_branch):
            known |= {a.request_id for a in w.source.approved()}
        rid = resolve_id(request_id, known,
                         where=f" on {w.config.audit.protected_branch} or in the audit trail")
        s, _ = audit.examine(rid, [e for e in events if e.request_id == rid])
        type_, fields = decide(w, s)
        fields = {**fields, "by": by.strip(), "reason": reason.strip()}
        event = AuditEvent(type_, rid, clock.now(), s.last_seq + 1, uuid.uuid4().hex[:12], fields, holder,
                           prev=s.last_digest)
        lock.fence()
        w.store.append(event)
        return event
    finally:
        lock.release()


def retry(config_path: Path | None, cwd: Path, request_id: str, *, by: str, reason: str,
          env: str = DEFAULT_ENV, now: datetime | None = None, accept_plan: bool = False) -> AuditEvent:
    """Reopen a failed / needs-operator request with the next attempt number (completed batches stay done).

    ``accept_plan``: the plan re-derived at the next pass becomes the approved one and runs whole
    (after plan drift). Takes the environment's lock like a runner, so it never races a pass.
    """
    def decide(w: Wiring, s: RequestState) -> tuple[str, dict[str, Any]]:
        if not s.last_seq:
            raise RescueError(f"{s.request_id} has not been picked up by the runner: nothing to retry")
        if s.outcome not in (audit.FAILED, audit.NEEDS_OPERATOR):
            raise RescueError(f"{s.request_id} is {s.status}; only failed or needs_operator requests "
                              "can be retried")
        fields: dict[str, Any] = {"attempt": s.attempt + 1}
        if accept_plan:
            fields["accept_plan"] = True
        return audit.OPERATOR_RETRY, fields

    return _operator_action(config_path, cwd, request_id, by=by, reason=reason, env=env, now=now,
                            decide=decide)


def close(config_path: Path | None, cwd: Path, request_id: str, *, by: str, reason: str,
          env: str = DEFAULT_ENV, now: datetime | None = None) -> AuditEvent:
    """Close a failed / needs-operator request for good (state ``closed``; it never runs again)."""
    def decide(w: Wiring, s: RequestState) -> tuple[str, dict[str, Any]]:
        if s.outcome not in (audit.FAILED, audit.NEEDS_OPERATOR):
            what = "cancel it with `rescue cancel`" if not s.terminal else "it is finished already"
            raise RescueError(f"{s.request_id} is {s.status}; only failed or needs_operator requests can be "
                              f"closed ({what})")
        return audit.OPERATOR_CLOSE, {"outcome": audit.CLOSED}

    return _operator_action(config_path, cwd, request_id, by=by, reason=reason, env=env, now=now,
                            decide=decide)


def cancel(config_path: Path | None, cwd: Path, request_id: str, *, by: str, reason: str,
           env: str = DEFAULT_ENV, now: datetime | None = None, timeout: float = 60.0,
           say: Callable[[str], None] = lambda line: None) -> AuditEvent:
    """Cancel a request that has not finished: its running flow run is cancelled through the Prefect API
    (the worker stops it), then the request ends ``cancelled`` and frees its place in the queue."""
    def decide(w: Wiring, s: RequestState) -> tuple[str, dict[str, Any]]:
        if s.terminal:
            raise RescueError(f"{s.request_id} is {s.status} already; nothing to cancel",
                              hint="`rescue close` ends a failed or needs_operator request for good")
        fields: dict[str, Any] = {"outcome": audit.CANCELLED}
        rec = s.in_flight
        if rec is not None and rec.flow_run_id:
            fields.update(batch=rec.index, flow_run_id=rec.flow_run_id,
                          run_state=_cancel_run(w, rec.flow_run_id, by=by, reason=reason, timeout=timeout,
                                                say=say))
        return audit.OPERATOR_CLOSE, fields

    return _operator_action(config_path, cwd, request_id, by=by, reason=reason, env=env, now=now,
                            decide=decide)


def _cancel_run(w: Wiring, flow_run_id: str, *, by: str, reason: str, timeout: float,
                say: Callable[[str], None]) -> str:
    from . import execution
    from .adapters import prefect_api
    from .errors import RunNotFound

    url = execution.prefect_api_url()
    if url is None:
        say(f"flow run {flow_run_id}: no PREFECT_API_URL; an embedded run ends with its runner "
            "(recorded as cancelled)")
        return "UNKNOWN"
    say(f"cancelling flow run {flow_run_id} ({execution.ui_url(url, flow_run_id)}) ...")
    try:
        note = f"cancelled with rescue cancel by {by.strip()}: {reason.strip()}"
        run = prefect_api.cancel_flow_run(url, flow_run_id, timeout=timeout, message=note)
    except RunNotFound:
        say(f"flow run {flow_run_id} is gone from Prefect")
        return "MISSING"
    if not run.is_final:
        say(f"flow run {flow_run_id} is still {run.state_name} after {timeout:g} s: is its worker online? "
            "It stops when the worker sees the cancellation")
    return str(run.state_type)
