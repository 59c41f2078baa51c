"""Re-validation at apply time: an approved request, judged now by the protected branch's config.

The same pipeline as ``rescue validate`` (strict YAML, schema, selector safety, dbt
resolution, plan, policy rules via ``app.check_policies``), on content read from git. dbt is
loaded once per runner, on the first request that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .audit import PlanBatch
from .config import Config
from .lineage import ancestors
from .model import Finding, ProjectGraph, Request
from .reconcile import Approved, Validation

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

    def validate(self, approved: Approved, now: datetime) -> Validation:
        from .app import RequestReport, check_policies, heavy_models, load_estimates, make_plan, open_dbt
        from .loader import load_text
        from .policies import applied_overrides
        from .request import build_request
        from .resolve import resolve, safety_findings
        from .schema import REQUEST_SCHEMA, validate_against_schema

        path = approved.path
        doc, findings = load_text(approved.content, path)
        if doc is None or _blocking(findings):
            return _refused(findings)
        findings = findings + validate_against_schema(doc, REQUEST_SCHEMA)
        if _blocking(findings):
            return _refused(findings)
        request, more = build_request(doc)
        findings += more + (safety_findings(request) if request is not None else [])
        if request is None or _blocking(findings):
            return _refused(findings)
        if self._dbt is None:
            self._dbt = open_dbt(self.config)
        dbt = self._dbt
        models, more = resolve(request, dbt)
        findings += more
        if _blocking(findings):
            return _refused(findings)
        graph = dbt.graph()
        estimates, _ = load_estimates(self.config)
        plan = make_plan(request, sorted(models), graph, self.config, estimates)
        report = RequestReport(path, request.id, list(findings), sorted(models), request, plan)
        check_policies([report], self.config, graph, estimates, now)
        blocking = [f for f in report.findings if f.blocking]
        expired = [f for f in blocking if f.code in EXPIRY_CODES]
        heavy = heavy_models(request, sorted(models), graph, self.config, estimates, now, plan)
        batches = tuple(PlanBatch(b.index, b.models, b.full_refresh, heavy=bool(heavy.intersection(b.models)),
                                  estimated_seconds=b.estimated_seconds)
                        for b in plan.batches)
        return Validation(
            ok=not blocking, fingerprint=plan.fingerprint, batches=batches, pause_seconds=plan.pause_seconds,
            problems=tuple(_line(f) for f in blocking),
            expired=f"expired ({expired[0].code}): {expired[0].message}" if expired else None,
            warnings=tuple(_line(f) for f in report.findings if not f.blocking) + tuple(plan.warnings),
            overrides=tuple(f"{f.code} approved by {f.override.approved_by}: {f.override.reason}"
                            for f in applied_overrides(report.findings) if f.override is not None),
            context=SubmitContext(request, graph, dbt),
            upstream=frozenset(ancestors(models, graph.parents)))


class BranchValidator:
    """``DbtValidator`` with the protected branch's configuration as it is at each call.

    ``rescue apply --wait`` may run for hours while someone merges a policy change; every
    re-validation must judge by the branch as it is then. The loaded dbt project is kept while
    the dbt settings stay the same.
    """

    def __init__(self, config: Callable[[], Config]) -> None:
        self._config = config
        self._current: tuple[Config, DbtValidator] | None = None

    def validate(self, approved: Approved, now: datetime) -> Validation:
        cfg = self._config()
        if self._current is None or self._current[0] is not cfg:
            keep = self._current[1].dbt if self._current and self._current[0].dbt == cfg.dbt else None
            self._current = (cfg, DbtValidator(cfg, keep))
        return self._current[1].validate(approved, now)


def _blocking(findings: list[Finding]) -> bool:
    return any(f.blocking for f in findings)


def _line(f: Finding) -> str:
    return f"{f.code} {f.message}" + (f" (line {f.line})" if f.line else "")


def _refused(findings: list[Finding]) -> Validation:
    return Validation(ok=False, problems=tuple(_line(f) for f in findings if f.blocking))
