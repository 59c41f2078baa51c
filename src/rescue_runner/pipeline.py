"""The one request pipeline: decode -> resolve -> policies -> plan.

``rescue validate``, ``rescue plan`` and the runner's re-validation at apply time all call
these functions, so a request is judged the same way in a pull request and at the moment it
runs. Decoding needs no dbt; ``Checker`` loads dbt at most once, on the first request that
reaches resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .model import Finding, PlannedBatch, ProjectGraph, Request
from .results import RequestReport

if TYPE_CHECKING:
    from .adapters.dbt import DbtProject
    from .config import Config
    from .estimates import Estimates


def _blocked(findings: Sequence[Finding]) -> bool:
    return any(f.blocking for f in findings)


def decode(content: bytes | None, path: str, *, file: Path | None = None) -> RequestReport:
    """Strict YAML, schema, request building and selector safety (no dbt).

    ``content`` is the request's bytes (e.g. read from a git commit); with ``file`` instead,
    the file is read with the loader's limits. Stops at the first step with a blocking finding.
    """
    from .loader import load_document, load_text
    from .request import request_id_for
    from .resolve import safety_findings
    from .schema import REQUEST_SCHEMA, validate_against_schema

    if file is not None:
        doc, findings = load_document(file, path)
    else:
        doc, findings = load_text(content or b"", path)
    report = RequestReport(path, request_id_for(path), list(findings))
    if doc is None or _blocked(findings):
        return report
    more = validate_against_schema(doc, REQUEST_SCHEMA)
    report.findings += more
    if _blocked(more):
        return report
    from .request import build_request

    request, more = build_request(doc)
    report.findings += more
    if request is None:
        return report
    report.request, report.id = request, request.id
    report.findings += safety_findings(request)
    return report


def judge_approved(content: bytes, path: str, config: Config,
                   now: datetime) -> tuple[Request | None, str | None]:
    """An approved file without dbt: its request (None when it does not decode) and, if the
    policy says it can no longer run at ``now``, why (``expiry``)."""
    report = decode(content, path)
    request = report.request if not _blocked(report.findings) else None
    return request, expiry(request, config, now)


def expiry(request: Request | None, config: Config, now: datetime) -> str | None:
    """Why ``request`` is expired (RR103: expires / max_age_days), judged without dbt; else None."""
    if request is None:
        return None
    from .policies import policy_from_config
    from .policies.base import PolicyContext
    from .policies.rr103_request_expired import check

    policy = policy_from_config(config.policy)
    ctx = PolicyContext(request, frozenset(), ProjectGraph({}, {}, ""), policy, now)
    found = next(iter(check(ctx)), None)
    return f"expired (RR103): {found.message}" if found is not None else None


def open_dbt(config: Config) -> DbtProject:
    """Load dbt once for the whole run: the configured manifest, or a parse of the project.

    A manifest or state given as a storage URL is fetched into the local cache first."""
    from .adapters.dbt import DbtProject
    from .errors import RescueError
    from .storage import display, fetch_file, fetch_state, is_url

    d = config.dbt
    creds, cache = config.storage.credentials(), cache_root(config)
    state = fetch_state(d.state, cache, creds) if d.state is not None else None
    if d.manifest is not None:
        local = fetch_file(d.manifest, cache, creds)
        try:
            return DbtProject.from_manifest(local, project_root=d.project_dir, state_dir=state)
        except RescueError as exc:
            if not is_url(d.manifest):
                raise
            raise RescueError(exc.message.replace(str(local), display(d.manifest)), hint=exc.hint) from None
    return DbtProject.from_project(d.project_dir, d.profiles_dir, d.target, state_dir=state,
                                   revision=d.revision)


def cache_root(config: Config) -> Path:
    """The local cache of remote storage (history, manifests)."""
    return config.storage.cache_dir or config.root / ".rescue" / "cache"


def load_estimates(config: Config, models: Sequence[str] = ()) -> tuple[Estimates, list[str]]:
    """Duration estimates from the configured run history (defaults when there is none).

    ``dbt.history`` is a local folder or a storage URL; from a URL the newest files are read
    through the local cache. Returns the estimates and notes about files not used."""
    from .estimates import Estimates, read_history
    from .storage import local_path, sync_history

    history = config.dbt.history
    if history is None:
        return Estimates().covering(models), []
    folder = local_path(history)
    notes: list[str] = []
    if folder is None:  # a URL: the newest files, through the local cache
        synced = sync_history(history, cache_root(config), config.storage.credentials(),
                              max_files=config.storage.history_files)
        folder, notes = synced.folder, list(synced.skipped)
    est, warnings = read_history(folder, models=models or None)
    import logging

    log = logging.getLogger("rescue_runner.history")
    for note in notes + warnings:  # a file in the history is never ignored silently
        log.warning("warning: run history: %s", note)
    return est, notes + warnings


class Checker:
    """Resolution, planning and the policy rules for decoded requests, with one dbt load.

    ``dbt`` is loaded by ``load_dbt`` (default: ``open_dbt(config)``) on the first request that
    needs it. ``now`` is the instant the policy's time rules judge by.
    """

    def __init__(self, config: Config, now: datetime, *, dbt: DbtProject | None = None,
                 load_dbt: Callable[[], DbtProject] | None = None,
                 estimates: Estimates | None = None) -> None:
        self.config, self.now = config, now
        self._dbt = dbt
        self._load_dbt = load_dbt or (lambda: open_dbt(config))
        self._estimates = estimates

    @property
    def dbt(self) -> DbtProject | None:
        """The dbt project loaded so far (None before the first request that needed it)."""
        return self._dbt

    def load(self) -> DbtProject:
        if self._dbt is None:
            self._dbt = self._load_dbt()
        return self._dbt

    @property
    def estimates(self) -> Estimates:
        if self._estimates is None:
            self._estimates = load_estimates(self.config)[0]
        return self._estimates

    def check(self, report: RequestReport, *, plan: bool = True,
              keep: Sequence[PlannedBatch] | None = None) -> None:
        """Resolve, plan (unless ``plan`` is False) and apply the policy to a decoded request.

        A request whose decoding already blocks is not resolved, but the policy rules still run
        (on no models) so every problem is reported at once. ``keep`` is an approved batch cut
        the planner keeps while it is still valid (see ``planner.build_plan``).
        """
        from .deployment_mapping import capabilities, request_findings
        from .planner import build_plan
        from .policies import PolicyContext, evaluate, policy_from_config, policy_hash
        from .resolve import resolve

        request = report.request
        if request is None:
            return
        graph = ProjectGraph(nodes={}, parents={}, identity="")
        est = self.estimates  # before dbt: unreachable storage is reported without a parse first
        if not report.blocking:
            dbt = self.load()
            models, more = resolve(request, dbt)
            report.models = sorted(models)
            report.findings += more
            if request.exclude and models:  # left out on purpose: listed apart from the stale tables
                report.excluded = sorted(dbt.select(request.select) - models)
            graph = dbt.graph()
        policy = policy_from_config(self.config.policy)
        mapping = self.config.prefect.mapping
        deployment = capabilities(mapping)
        excluded = frozenset(report.excluded)
        ctx = PolicyContext(request, frozenset(report.models), graph, policy, self.now,
                            seconds=est.seconds, default_seconds=est.default_seconds, deployment=deployment,
                            excluded=excluded)
        if plan and report.models:
            heavy = [m for m in report.models
                     if m in graph.nodes and ctx.heavy_reason(graph.nodes[m]) is not None]
            report.plan = build_plan(request, report.models, graph, est.covering(report.models),
                                     policy_hash=policy_hash(policy), heavy_ids=heavy, keep=keep,
                                     excluded=excluded)
            ctx = PolicyContext(request, frozenset(report.models), graph, policy, self.now,
                                seconds=est.seconds, default_seconds=est.default_seconds, plan=report.plan,
                                deployment=deployment, excluded=excluded)
        report.findings += evaluate(ctx)
        # What the target deployment cannot carry is never dropped silently (prefect.mapping).
        p = self.config.prefect
        report.findings += request_findings(request, mapping, deployment=f"{p.flow}/{p.deployment}")
        report.findings.sort(key=lambda f: (f.line or 0, f.code, f.message))

    @property
    def graph(self) -> ProjectGraph | None:
        return self._dbt.graph() if self._dbt is not None else None
