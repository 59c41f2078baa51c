"""Per-model duration estimates from a history of dbt ``run_results.json`` files.

The estimate of a model is the median ``execution_time`` of its most recent
successful runs. A model without history gets a stated default and is reported
as unknown: an estimate is never silently zero.
"""

from __future__ import annotations

import gzip
import json
import math
import statistics
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .storage import is_history_candidate

DEFAULT_SECONDS = 60.0
DEFAULT_LAST = 5
# Statuses of a model, seed or snapshot that built successfully (tests "pass" instead).
SUCCESS_STATUSES = frozenset({"success"})
_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Estimates:
    """Estimated seconds per unique_id; ``unknown`` lists the asked-for models without history."""

    seconds: Mapping[str, float] = field(default_factory=dict)
    unknown: frozenset[str] = frozenset()
    default_seconds: float = DEFAULT_SECONDS
    sources: int = 0  # run_results files that contributed

    def for_model(self, uid: str) -> tuple[float, bool]:
        """``(seconds, unknown)``: the estimate, and True when it is the stated default."""
        if uid in self.seconds:
            return self.seconds[uid], False
        return self.default_seconds, True

    def covering(self, models: Iterable[str]) -> Estimates:
        """The same estimates with ``unknown`` set to those of ``models`` without history."""
        unknown = frozenset(m for m in models if m not in self.seconds)
        return Estimates(self.seconds, unknown, self.default_seconds, self.sources)


@dataclass(frozen=True)
class _Sample:
    generated_at: datetime
    order: str  # tie-breaker: the file's relative path
    seconds: float


def estimates_from_run_results(
    documents: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    last: int = DEFAULT_LAST,
    default_seconds: float = DEFAULT_SECONDS,
    models: Collection[str] | None = None,
) -> tuple[Estimates, list[str]]:
    """Estimates from already-parsed run_results documents, given as ``(name, document)``.

    Returns the estimates and warnings about documents that were not usable.
    ``models``, when given, are the models the caller cares about: those without
    history end up in ``Estimates.unknown``.
    """
    if last < 1:
        raise ValueError(f"last must be at least 1, not {last}")
    if not (math.isfinite(default_seconds) and default_seconds >= 0):
        raise ValueError(f"default_seconds must be a finite number >= 0, not {default_seconds}")
    samples: dict[str, list[_Sample]] = {}
    warnings: list[str] = []
    used = 0
    for name, doc in documents:
        results = doc.get("results") if isinstance(doc, Mapping) else None
        if not isinstance(results, list):
            warnings.append(f"{name}: skipped, not a dbt run_results file (no 'results' list)")
            continue
        metadata = doc.get("metadata")
        when = _parse_time(metadata.get("generated_at") if isinstance(metadata, Mapping) else None)
        if when is None:
            warnings.append(f"{name}: no readable metadata.generated_at; its runs count as the oldest")
            when = _OLDEST
        contributed = False
        for r in results:
            if not isinstance(r, Mapping) or r.get("status") not in SUCCESS_STATUSES:
                continue
            uid, secs = r.get("unique_id"), _seconds(r)
            if isinstance(uid, str) and secs is not None:
                samples.setdefault(uid, []).append(_Sample(when, name, secs))
                contributed = True
        used += contributed
    seconds = {}
    for uid in sorted(samples):
        recent = sorted(samples[uid], key=lambda s: (s.generated_at, s.order), reverse=True)[:last]
        seconds[uid] = float(statistics.median(s.seconds for s in recent))
    unknown = frozenset(m for m in models if m not in seconds) if models is not None else frozenset()
    return Estimates(seconds, unknown, float(default_seconds), used), warnings


def read_history(
    folder: str | Path,
    *,
    last: int = DEFAULT_LAST,
    default_seconds: float = DEFAULT_SECONDS,
    models: Collection[str] | None = None,
) -> tuple[Estimates, list[str]]:
    """Estimates from every ``*.json`` (or ``.json.gz``) under ``folder``, recursively, but
    dbt's companion artifacts (``manifest.json``, ``catalog.json``, ``summary.json``...).

    Unreadable or foreign files are skipped with a warning; a missing folder gives
    empty estimates and one warning. Never raises for bad history content.
    """
    root = Path(folder)
    if root.is_file():
        files = [root]
        root = root.parent
    elif root.is_dir():
        # Any JSON file but dbt's known companions (manifest, catalog, ...): a file under
        # another name that is not run results is named in a warning, never silently ignored.
        files = sorted(p for p in root.rglob("*.json*") if p.is_file() and is_history_candidate(p.name))
    else:
        return estimates_from_run_results([], last=last, default_seconds=default_seconds, models=models)[0], [
            f"{root.name or root}: no run history folder; every model gets the default estimate"
        ]
    docs: list[tuple[str, Mapping[str, Any]]] = []
    warnings: list[str] = []
    for p in files:
        name = p.relative_to(root).as_posix()
        try:
            doc = _read_json(p)
        except (OSError, ValueError, EOFError, RecursionError) as exc:  # json/unicode errors are ValueErrors
            warnings.append(f"{name}: skipped, unreadable ({type(exc).__name__}: {exc})")
            continue
        docs.append((name, doc))
    est, more = estimates_from_run_results(docs, last=last, default_seconds=default_seconds, models=models)
    return est, warnings + more


def _read_json(path: Path) -> Any:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _seconds(result: Mapping[str, Any]) -> float | None:
    """``execution_time``, else the span of the ``execute`` timing step; None when neither is usable."""
    value = result.get("execution_time")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    for step in result.get("timing") or ():
        if isinstance(step, Mapping) and step.get("name") == "execute":
            start, end = _parse_time(step.get("started_at")), _parse_time(step.get("completed_at"))
            if start and end and end >= start:
                return (end - start).total_seconds()
    return None
