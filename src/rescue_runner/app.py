"""Use cases. One direction: load -> schema -> resolve (dbt) -> policies -> plan -> explain.

The CLI parses options and renders; everything it does is a call into this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config
from .discovery import display_path, request_files
from .model import Finding, Plan, ProjectGraph, Request

if TYPE_CHECKING:
    from .adapters.dbt import DbtProject
    from .contention import BatchStart
    from .estimates import Estimates


@dataclass
class RequestReport:
    """Everything `rescue validate` knows about one request file."""

    path: str
    id: str | None
    findings: list[Finding] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    request: Request | None = None
    plan: Plan | None = None

    @property
    def ok(self) -> bool:
        return not any(f.blocking for f in self.findings)


@dataclass
class ValidationReport:
    """The result of validating a set of request files."""

    requests: list[RequestReport]
    graph: ProjectGraph | None = None  # for drawing plans; None when dbt was not needed
    config_findings: list[Finding] = field(default_factory=list)  # about rescue.yaml itself (RR190)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.requests) and not any(f.blocking for f in self.config_findings)

    @property
    def findings(self) -> list[Finding]:
        return [*self.config_findings, *(f for r in self.requests for f in r.findings)]


def open_dbt(config: Config) -> DbtProject:
    """Load dbt once for the whole run: the configured manifest, or a parse of the project."""
    from .adapters.dbt import DbtProject

    d = config.dbt
    if d.manifest is not None:
        return DbtProject.from_manifest(d.manifest, project_root=d.project_dir, state_dir=d.state)
    return DbtProject.from_project(d.project_dir, d.profiles_dir, d.target, state_dir=d.state)


def load_requests(paths: Sequence[Path], config: Config, cwd: Path) -> list[RequestReport]:
    """Decode every request file (no dbt yet): strict YAML, schema, request building."""
    from .request import check_unique_ids, load_request

    reports: list[RequestReport] = []
    for p in request_files(paths, config.requests_dir):
        shown = display_path(p, cwd)
        req, findings = load_request(p, shown)
        reports.append(RequestReport(shown, req.id if req else p.stem, list(findings), request=req))
    loaded = [r.request for r in reports if r.request is not None]
    dup = check_unique_ids(loaded)
    for r in reports:
        r.findings.extend(f for f in dup if f.path == r.path)
    return reports


def load_estimates(config: Config, models: Sequence[str] = ()) -> tuple[Estimates, list[str]]:
    """Duration estimates from the configured run_results history (defaults when there is none)."""
    from .estimates import Estimates, read_history

    if config.dbt.history_dir is None:
        return Estimates().covering(models), []
    return read_history(config.dbt.history_dir, models=models or None)


def current_policy_hash(config: Config) -> str:
    """The hash of the effective policy, recorded in every plan fingerprint."""
    from .policies import policy_from_config, policy_hash

    return policy_hash(policy_from_config(config.policy))


def make_plan(request: Request, models: Sequence[str], graph: ProjectGraph, config: Config,
              estimates: Estimates | None = None) -> Plan:
    """The deterministic, fingerprinted plan for a resolved request."""
    from .planner import build_plan

    if estimates is None:
        estimates, _ = load_estimates(config, models)
    return build_plan(request, models, graph, estimates.covering(models),
                      policy_hash=current_policy_hash(config))


def validate(paths: Sequence[Path], config: Config, *, cwd: Path | None = None,
             dbt: DbtProject | None = None, with_plan: bool = True, now: datetime | None = None,
             config_findings: Sequence[Finding] = ()) -> ValidationReport:
    """Validate request files: decode, check selectors, resolve with dbt, plan, apply the policy.

    dbt is loaded at most once, and only when some request reached the selection stage,
    so a malformed file is reported in milliseconds. ``now`` (default: the clock) is the
    instant the policy's time rules judge by; ``config_findings`` are carried into the report.
    """
    from .resolve import resolve, safety_findings

    cwd = cwd or Path.cwd()
    reports = load_requests(paths, config, cwd)
    todo: list[RequestReport] = []
    for r in reports:
        if r.request is None:
            continue
        safety = safety_findings(r.request)
        r.findings.extend(safety)
        if not any(f.blocking for f in safety):
            todo.append(r)
    if todo and dbt is None:
        dbt = open_dbt(config)
    for r in todo:
        assert r.request is not None and dbt is not None
        models, findings = resolve(r.request, dbt)
        r.models = sorted(models)
        r.findings.extend(findings)
    graph = dbt.graph() if dbt is not None and todo else None
    estimates = load_estimates(config)[0] if any(r.request is not None for r in reports) else None
    if with_plan and graph is not None and estimates is not None:
        for r in todo:
            if r.request is not None and r.models:
                r.plan = make_plan(r.request, r.models, graph, config, estimates)
    if estimates is not None:
        check_policies(reports, config, graph, estimates, now or datetime.now(UTC))
    for r in reports:
        r.findings.sort(key=lambda f: (f.line or 0, f.code, f.message))
    return ValidationReport(reports, graph, list(config_findings))


def check_policies(reports: Sequence[RequestReport], config: Config, graph: ProjectGraph | None,
                   estimates: Estimates, now: datetime) -> None:
    """Apply the policy rules to every decoded request (its resolved models, if dbt ran)."""
    from .deployment_mapping import capabilities, request_findings
    from .policies import PolicyContext, evaluate, policy_from_config

    policy = policy_from_config(config.policy)
    graph = graph or ProjectGraph(nodes={}, parents={}, identity="")
    for r in reports:
        if r.request is not None:
            ctx = PolicyContext(r.request, frozenset(r.models), graph, policy, now,
                                seconds=estimates.seconds, default_seconds=estimates.default_seconds,
                                plan=r.plan, deployment=capabilities(config.prefect.mapping))
            r.findings.extend(evaluate(ctx))
            # What the target deployment cannot carry is never dropped silently (prefect.mapping).
            r.findings.extend(request_findings(r.request, config.prefect.mapping,
                                               deployment=f"{config.prefect.flow}/{config.prefect.deployment}"))


def heavy_models(request: Request, models: Sequence[str], graph: ProjectGraph, config: Config,
                 estimates: Estimates, now: datetime, plan: Plan) -> frozenset[str]:
    """The request's models the policy calls heavy (they weigh more in the queue)."""
    from .policies import PolicyContext, policy_from_config

    policy = policy_from_config(config.policy)
    ctx = PolicyContext(request, frozenset(models), graph, policy, now, seconds=estimates.seconds,
                        default_seconds=estimates.default_seconds, plan=plan)
    return frozenset(m for m in models if m in graph.nodes and ctx.heavy_reason(graph.nodes[m]) is not None)


def plan_schedule(config: Config, report: RequestReport, graph: ProjectGraph, *, now: datetime,
                  api_url: str | None) -> tuple[list[BatchStart], str]:
    """When each batch of a planned request is expected to start: within its window and, with a
    Prefect server, where the queue forecast says it fits. Also a line saying what was used."""
    from .contention import expected_starts
    from .errors import RescueError
    from .execution import contention_snapshot

    assert report.request is not None and report.plan is not None
    plan, request = report.plan, report.request
    estimates, _ = load_estimates(config, report.models)
    heavy = heavy_models(request, report.models, graph, config, estimates, now, plan)
    snapshot, basis = None, "no Prefect server (PREFECT_API_URL unset): window and pauses only"
    if api_url is not None:
        try:
            snapshot = contention_snapshot(config, now=now, api_url=api_url)
            basis = f"queue {config.prefect.work_queue} forecast from {api_url} at {now:%H:%M} UTC"
        except RescueError as exc:
            basis = f"queue unknown ({exc}): window and pauses only"
    batches = [(b.estimated_seconds, bool(heavy.intersection(b.models))) for b in plan.batches]
    starts = expected_starts(batches, pause_seconds=plan.pause_seconds, now=now, settings=config.prefect,
                             snapshot=snapshot, window=request.window)
    return list(starts), basis
