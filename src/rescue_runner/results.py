"""The values the use cases return and ``reporting/`` renders.

Plain data with no behaviour beyond derived properties, so the renderers depend on these
and on nothing that runs a use case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .audit import RequestState
from .model import Finding, Plan, ProjectGraph, Request

if TYPE_CHECKING:
    from .windows import Timeline


@dataclass
class RequestReport:
    """Everything the pipeline knows about one request file."""

    path: str
    id: str | None
    findings: list[Finding] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    request: Request | None = None
    plan: Plan | None = None
    excluded: list[str] = field(default_factory=list)  # models the request's exclude removed
    timeline: Timeline | None = None  # expected batch starts in the request's zone (with a window)

    @property
    def ok(self) -> bool:
        return not any(f.blocking for f in self.findings)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]


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


# ---- status (``rescue status``) ----

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
