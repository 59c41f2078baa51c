"""Checking requests: what ``rescue validate`` and ``rescue plan`` do, before anything runs.

Load request files, take each through the one pipeline (``pipeline``: decode -> resolve ->
policies -> plan) and, for a plan, when its batches are expected to start. Nothing here
submits a batch: the runner's commands are ``operate``, one batch on Prefect is ``execution``.
The CLI parses options and renders; what it checks is a call into this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config
from .discovery import display_path, request_files
from .model import Finding, Plan, ProjectGraph, Request
from .pipeline import Checker, decode, load_estimates, open_dbt
from .results import RequestReport, ValidationReport

if TYPE_CHECKING:
    from .adapters.dbt import DbtProject
    from .contention import BatchStart
    from .windows import Timeline

__all__ = ["current_policy_hash", "load_estimates", "load_requests", "open_dbt", "validate"]


def load_requests(paths: Sequence[Path], config: Config, cwd: Path) -> list[RequestReport]:
    """Decode every request file (no dbt yet): strict YAML, schema, request building, selector safety."""
    from .request import check_unique_ids

    reports = [decode(None, display_path(p, cwd), file=p) for p in request_files(paths, config.requests_dir)]
    dup = check_unique_ids([r.request for r in reports if r.request is not None])
    for r in reports:
        r.findings.extend(f for f in dup if f.path == r.path)
    return reports


def current_policy_hash(config: Config) -> str:
    """The hash of the effective policy, recorded in every plan fingerprint."""
    from .policies import policy_from_config, policy_hash

    return policy_hash(policy_from_config(config.policy))


def finished_requests(config: Config) -> dict[str, tuple[str, str | None]] | None:
    """``{id: (outcome, content hash)}`` of every request the audit branch says reached an end.

    Read from this clone's copy of the audit branch (``<audit.remote>/<audit.branch>``, as last
    fetched; nothing is fetched here); None when the clone has no copy or is no git repository.
    """
    from . import audit
    from .adapters.git_audit import GitAuditStore, GitRemote
    from .errors import RescueError

    try:
        events = GitAuditStore(GitRemote(config.root, config.audit.remote), config.audit.branch).read_local()
    except RescueError:
        return None
    if events is None:
        return None
    out: dict[str, tuple[str, str | None]] = {}
    for rid, (state, _) in audit.examine_all(events).items():
        if state.outcome is not None:
            out[rid] = (state.outcome, state.content_hash)
    return out


def validate(paths: Sequence[Path], config: Config, *, cwd: Path | None = None,
             dbt: DbtProject | None = None, with_plan: bool = True, now: datetime | None = None,
             config_findings: Sequence[Finding] = (),
             finished: Mapping[str, tuple[str, str | None]] | None = None) -> ValidationReport:
    """Validate request files through the one pipeline (``pipeline``): decode, resolve, plan, policy.

    dbt is loaded at most once, and only when some request reached the selection stage,
    so a malformed file is reported in milliseconds. ``now`` (default: the clock) is the
    instant the policy's time rules judge by; ``config_findings`` are carried into the report.
    ``finished`` (``finished_requests``): ids already used, for RR014.
    """
    from .request import check_reused_ids

    cwd = cwd or Path.cwd()
    reports = load_requests(paths, config, cwd)
    if finished:
        reused = check_reused_ids([r.request for r in reports if r.request is not None], finished)
        for r in reports:
            r.findings.extend(f for f in reused if f.path == r.path)
    checker = Checker(config, now or datetime.now(UTC), dbt=dbt)
    for r in reports:
        checker.check(r, plan=with_plan)
    if checker.dbt is not None:
        checker.dbt.remember()  # the selections resolved now, for the next run on the same input
        r.findings.sort(key=lambda f: (f.line or 0, f.code, f.message))
        if r.request is not None and r.plan is not None:
            r.timeline = plan_timeline(r.request, r.plan, config, checker.now)
    return ValidationReport(reports, checker.graph, list(config_findings))


def plan_timeline(request: Request, plan: Plan, config: Config, now: datetime) -> Timeline | None:
    """When each batch would start if approved ``now``, given the request's window (no queue
    forecast: see ``plan_schedule``); None when the request has no window."""
    from .contention import expected_starts
    from .policies import policy_from_config
    from .windows import Timeline, UnknownTimezone, display_zone

    if request.window is None:
        return None
    try:
        starts = expected_starts([(b.estimated_seconds, False) for b in plan.batches],
                                 pause_seconds=plan.pause_seconds, now=now, settings=config.prefect,
                                 window=request.window)
    except (UnknownTimezone, ValueError):
        return None  # RR302 and friends report the window itself
    quiet = policy_from_config(config.policy).quiet
    return Timeline(tuple(s.start for s in starts), display_zone(request.window, quiet))


def check_selection(dbt: DbtProject, select: Sequence[str], exclude: Sequence[str] = ()) -> list[Finding]:
    """What resolving a draft selection says (RR200/RR201 errors, RR205/RR206 warnings, with
    did-you-mean suggestions), before any request file exists (`rescue new`)."""
    from .resolve import resolve

    draft = Request(id="draft", path="", version=1, reason="", requested_by="",
                    select=tuple(select), exclude=tuple(exclude))
    return resolve(draft, dbt)[1]


def plan_schedule(config: Config, report: RequestReport, graph: ProjectGraph, *, now: datetime,
                  api_url: str | None) -> tuple[list[BatchStart], str]:
    """When each batch of a planned request is expected to start: within its window and, with a
    Prefect server, where the queue forecast says it fits. Also a line saying what was used."""
    from .contention import expected_starts
    from .errors import RescueError
    from .execution import contention_snapshot

    assert report.request is not None and report.plan is not None
    plan, request = report.plan, report.request
    snapshot, basis = None, "no Prefect server (PREFECT_API_URL unset): window and pauses only"
    if api_url is not None:
        try:
            snapshot = contention_snapshot(config, now=now, api_url=api_url)
            basis = f"queue {config.prefect.work_queue} forecast from {api_url} at {now:%H:%M} UTC"
        except RescueError as exc:
            basis = f"queue unknown ({exc}): window and pauses only"
    batches = [(b.estimated_seconds, b.heavy) for b in plan.batches]
    starts = expected_starts(batches, pause_seconds=plan.pause_seconds, now=now, settings=config.prefect,
                             snapshot=snapshot, window=request.window)
    return list(starts), basis
