"""Re-validation at apply time: an approved request, judged now by the protected branch's config.

The same pipeline as ``rescue validate`` (``pipeline``: strict YAML, schema, selector safety,
dbt resolution, plan, policy rules), on content read from git. dbt is loaded once per runner,
on the first request that needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config
from .lineage import ancestors
from .model import Finding, PlannedBatch, ProjectGraph, Request
from .reconcile import Approved, Revalidation

if TYPE_CHECKING:
    from .adapters.dbt import DbtProject

# Policy codes that mean "this request can never run any more" rather than "it is wrong".
EXPIRY_CODES = ("RR103", "RR307")


@dataclass(frozen=True)
class SubmitContext:
    """What submission needs from validation (opaque to the reconciler)."""

    request: Request
    graph: ProjectGraph
    dbt: Any  # DbtProject: its ``select`` verifies each batch's selectors


class DbtValidator:
    """``Validator`` over dbt and the policy rules."""

    def __init__(self, config: Config, dbt: DbtProject | None = None) -> None:
        self.config = config
        self._dbt = dbt

    @property
    def dbt(self) -> DbtProject | None:
        """The dbt project loaded so far (None before the first request that needed it)."""
        return self._dbt

    def validate(self, approved: Approved, now: datetime, *,
                 keep: Sequence[PlannedBatch] | None = None) -> Revalidation:
        """The approved content through the one pipeline (``pipeline``), judged at ``now``.

        ``keep`` is the batch cut recorded when the request was first validated: the planner
        keeps it while it is still valid, so fresher run history alone never looks like drift.
        """
        from .pipeline import Checker, decode
        from .policies import applied_overrides, policy_from_config, policy_hash

        report = decode(approved.content, approved.path)
        if report.request is None or report.blocking:
            return _refused(report.findings)
        checker = Checker(self.config, now, dbt=self._dbt)
        checker.check(report, keep=keep)
        self._dbt = checker.dbt
        if self._dbt is not None:
            self._dbt.remember()
        request, plan = report.request, report.plan
        blocking = report.blocking
        if plan is None:
            return _refused(report.findings)
        expired = [f for f in blocking if f.code in EXPIRY_CODES]
        assert checker.dbt is not None
        graph = checker.dbt.graph()
        digests, upstream = scope_digests(plan.models, graph)
        return Revalidation(
            ok=not blocking, fingerprint=plan.fingerprint, batches=plan.batches,
            pause_seconds=plan.pause_seconds,
            problems=tuple(_line(f) for f in blocking),
            expired=f"expired ({expired[0].code}): {expired[0].message}" if expired else None,
            warnings=tuple(_line(f) for f in report.findings if not f.blocking) + tuple(plan.warnings),
            overrides=tuple(f"{f.code} approved by {f.override.approved_by}: {f.override.reason}"
                            for f in applied_overrides(report.findings) if f.override is not None),
            policy=policy_hash(policy_from_config(self.config.policy)), digests=digests,
            upstream_digest=upstream,
            event_time=_window(request), context=SubmitContext(request, graph, checker.dbt),
            upstream=frozenset(ancestors(plan.models, graph.parents)))


class BranchValidator:
    """``DbtValidator`` with the protected branch's configuration as it is at each call.

    ``rescue apply --wait`` may run for hours while someone merges a policy change; every
    re-validation must judge by the branch as it is then. With ``commit`` (the approved commit
    of the protected branch) the dbt project is the one of that commit (``trusted.dbt_at``),
    never the runner's working tree. The loaded dbt project is kept while the dbt settings
    (so the commit) stay the same.
    """

    def __init__(self, config: Callable[[], Config], commit: Callable[[], str] | None = None,
                 root: Path | None = None) -> None:
        self._config, self._commit, self._root = config, commit, root
        self._current: tuple[Config, DbtValidator] | None = None
        self._at: tuple[Config, str, Config] | None = None

    def _judged_by(self) -> Config:
        cfg = self._config()
        if self._commit is None or self._root is None:
            return cfg
        sha = self._commit()
        if self._at is None or self._at[0] is not cfg or self._at[1] != sha:
            from .trusted import dbt_at

            self._at = (cfg, sha, dbt_at(cfg, self._root, sha))
        return self._at[2]

    def validate(self, approved: Approved, now: datetime, *,
                 keep: Sequence[PlannedBatch] | None = None) -> Revalidation:
        cfg = self._judged_by()
        if self._current is None or self._current[0] is not cfg:
            loaded = self._current[1].dbt if self._current and self._current[0].dbt == cfg.dbt else None
            self._current = (cfg, DbtValidator(cfg, loaded))
        return self._current[1].validate(approved, now, keep=keep)


def scope_digests(models: Sequence[str], graph: ProjectGraph) -> tuple[dict[str, str], str]:
    """The digest of each selected model, and one digest over every node they depend on."""
    import hashlib
    import json

    from .lineage import ancestors

    up = sorted(ancestors(models, graph.parents) - set(models))
    blob = json.dumps([[u, graph.digests.get(u, "")] for u in up], separators=(",", ":")).encode()
    return {m: graph.digests.get(m, "") for m in models}, "sha256:" + hashlib.sha256(blob).hexdigest()


def _window(request: Request) -> tuple[str, str] | None:
    et = request.event_time
    if et is None:
        return None
    return (et.start.isoformat(), et.end.isoformat())


def _line(f: Finding) -> str:
    return f"{f.code} {f.message}" + (f" (line {f.line})" if f.line else "")


def _refused(findings: Sequence[Finding]) -> Revalidation:
    return Revalidation(ok=False, problems=tuple(_line(f) for f in findings if f.blocking))
