"""Frozen value types shared by every layer. No I/O, no heavy imports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from typing import Any

# A path into a YAML document: ("batches", "max_models") or ("select", 0).
DocPath = tuple[str | int, ...]


def nearest_line(lines: Mapping[DocPath, int], doc_path: DocPath) -> int | None:
    """The line recorded for ``doc_path``, or for its nearest ancestor; None when none is."""
    p = tuple(doc_path)
    while p not in lines:
        if not p:
            return None
        p = p[:-1]
    return lines[p]


class Severity(StrEnum):
    """How bad a finding is. ``error`` blocks; ``warning`` and ``info`` do not."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about one request or configuration file.

    ``code`` is stable (``RR001`` ...) and documented in docs/rules.md.
    ``message`` says what is wrong and what to do about it.
    """

    code: str
    severity: Severity
    message: str
    path: str
    line: int | None = None

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "path": self.path,
            "line": self.line,
        }


@dataclass(frozen=True)
class RawDocument:
    """A YAML document decoded strictly: plain data plus the line of every node.

    ``lines`` maps a DocPath to the 1-based line where that node starts
    (the key's line for mapping values). ``()`` is the document itself.
    """

    path: str
    data: Any
    lines: Mapping[DocPath, int]
    content_hash: str  # "sha256:<hex>" of the raw bytes

    def line_of(self, doc_path: DocPath) -> int | None:
        """The line of ``doc_path``, or of its nearest ancestor that has one."""
        return nearest_line(self.lines, doc_path)


@dataclass(frozen=True)
class DailyWindow:
    """A recurring daily window in local time; ``end <= start`` crosses midnight."""

    start: time
    end: time


@dataclass(frozen=True)
class Window:
    """When a request may run. All absolute bounds are timezone-aware."""

    not_before: datetime | None = None
    not_after: datetime | None = None
    daily: DailyWindow | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class BatchSpec:
    """How to split a request into batches (all optional)."""

    max_models: int | None = None
    max_minutes: float | None = None
    pause_minutes: float = 0.0


@dataclass(frozen=True)
class EventTime:
    """Microbatch backfill window, UTC, ``end`` exclusive (as dbt's --event-time-end)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Override:
    """A recorded approval to proceed despite a ``soft`` policy finding."""

    code: str
    approved_by: str
    reason: str


@dataclass(frozen=True)
class Request:
    """A rescue request, decoded and schema-valid. ``id`` is the file stem."""

    id: str
    path: str
    version: int
    reason: str
    requested_by: str
    select: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    full_refresh: bool = False
    ticket: str | None = None
    window: Window | None = None
    batches: BatchSpec | None = None
    event_time: EventTime | None = None
    expires: datetime | None = None
    priority: int = 0
    overrides: tuple[Override, ...] = ()
    content_hash: str = ""
    lines: Mapping[DocPath, int] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def line_of(self, *doc_path: str | int) -> int | None:
        """The line of a field in the request file (nearest ancestor if absent)."""
        return nearest_line(self.lines, doc_path)


@dataclass(frozen=True)
class NodeInfo:
    """What the planner and the policies need to know about one dbt node."""

    unique_id: str
    name: str
    resource_type: str
    materialized: str | None = None
    full_refresh: bool | None = None  # the model's `full_refresh` config (False: dbt ignores --full-refresh)
    incremental_strategy: str | None = None
    event_time: str | None = None
    begin: str | None = None  # microbatch `begin`
    batch_size: str | None = None  # microbatch `batch_size`
    tags: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    original_file_path: str = ""
    fqn: tuple[str, ...] = ()  # dbt's fully qualified name: package, folders..., name


@dataclass(frozen=True)
class ProjectGraph:
    """The dbt graph as plain data: enough for lineage, planning and policies.

    ``parents`` covers every node (models, seeds, snapshots, sources, tests ...),
    so ancestry through unselected nodes can be followed. ``nodes`` holds the
    nodes that can be selected for a rescue (models, seeds, snapshots).
    ``identity`` names the manifest (hash of its node checksums); ``digests`` holds one digest
    per node (code checksum and config), so a plan fingerprint covers only the nodes it builds
    and their ancestors.
    """

    nodes: Mapping[str, NodeInfo]
    parents: Mapping[str, tuple[str, ...]]
    identity: str
    digests: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Downstream:
    """The tables a selection leaves stale (see downstream.py): ids sorted by name."""

    stale: tuple[str, ...] = ()  # hold data, downstream, neither selected nor excluded
    excluded: tuple[str, ...] = ()  # would be stale, but the request's exclude left them out
    feeding: tuple[str, ...] = ()  # the selected models the stale tables are built from

    def __bool__(self) -> bool:
        return bool(self.stale or self.excluded)

    def to_dict(self) -> dict[str, list[str]]:
        return {"stale": list(self.stale), "excluded": list(self.excluded), "feeding": list(self.feeding)}


@dataclass(frozen=True)
class PlannedBatch:
    """One dbt invocation: models in lineage order, all with the same full-refresh flag.

    The one batch type from planning to the audit trail and the flow run: the plan shown in a
    pull request, the ``batches`` of a ``request_validated`` event and what a flow run builds.
    ``heavy`` says the batch holds a model the policy calls heavy (it waits for quiet windows
    and heavy queue slots).
    """

    index: int  # 1-based
    models: tuple[str, ...]
    full_refresh: bool = False
    estimated_seconds: float = 0.0
    unknown_estimates: tuple[str, ...] = ()  # models whose estimate is the stated default
    start_offset_seconds: float = 0.0  # from plan start, including earlier pauses
    heavy: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "models": list(self.models),
            "full_refresh": self.full_refresh,
            "heavy": self.heavy,
            "estimated_seconds": self.estimated_seconds,
            "unknown_estimates": list(self.unknown_estimates),
            "start_offset_seconds": self.start_offset_seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlannedBatch:
        """Read ``to_dict`` output; KeyError / TypeError / ValueError when it is not one."""
        models = d["models"]
        if not isinstance(models, list | tuple) or not all(isinstance(m, str) for m in models):
            raise ValueError("batch models must be a list of unique ids")
        return cls(int(d["index"]), tuple(models), bool(d.get("full_refresh")),
                   float(d.get("estimated_seconds") or 0.0),
                   tuple(str(m) for m in d.get("unknown_estimates") or ()),
                   float(d.get("start_offset_seconds") or 0.0), bool(d.get("heavy")))

    def same_work(self, other: PlannedBatch) -> bool:
        """Whether two batches build the same thing (estimates and the history-based heavy flag aside)."""
        return (self.index, self.models, self.full_refresh) == (other.index, other.models, other.full_refresh)


@dataclass(frozen=True)
class Plan:
    """A deterministic, fingerprinted plan for one request."""

    request_id: str
    fingerprint: str
    batches: tuple[PlannedBatch, ...]
    estimated_seconds: float  # sum of batch estimates (pauses excluded)
    pause_seconds: float = 0.0  # between consecutive batches
    warnings: tuple[str, ...] = ()
    downstream: Downstream = field(default_factory=Downstream)  # what the plan leaves stale

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(m for b in self.batches for m in b.models)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "fingerprint": self.fingerprint,
            "batches": [b.to_dict() for b in self.batches],
            "estimated_seconds": self.estimated_seconds,
            "pause_seconds": self.pause_seconds,
            "warnings": list(self.warnings),
            "stale_downstream": self.downstream.to_dict(),
        }
