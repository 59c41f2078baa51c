"""A schema-valid document becomes a ``Request``: ids, strict dates, normalized selectors.

``load_request(path)`` chains the three steps: ``loader.load_document`` (RR001-RR006),
``schema.validate_against_schema`` (RR010) and ``build_request`` (RR011, RR012); each
step runs only when the previous one found no error.

Codes (severity ``error``):

======  ==========================================================================
RR011   The file name is not a valid request id: the id is the file name without
        its extension and must match ``^[a-z0-9][a-z0-9._-]{0,79}$`` (lower case,
        digits, ``.``, ``_``, ``-``; at most 80 characters). Rename the file.
RR012   A date or date-time has the right shape but is not a real instant
        (``2026-02-30``, ``2026-13-01``, hour 24), or lacks a timezone.
RR013   Two request files share an id (same file name in different folders).
RR014   The id was already used by a request that reached an end (succeeded, failed,
        expired, cancelled ...; recorded on the audit branch) and this file's content
        differs: ids are used once, so it would never run. Choose a new id (rename the
        file). Checked when the audit branch is available locally (see docs/operating.md).
======  ==========================================================================

Decisions a user may need to know:

* Every absolute date-time is converted to UTC (``+00:00``); the offset written in the
  file only serves to compute the instant.
* ``event_time`` dates (``2026-03-01``) mean midnight UTC of that day; ``end`` is
  exclusive, as for dbt's ``--event-time-end``.
* ``expires`` as a date means "until the end of that day, UTC": ``expires: 2026-03-31``
  is stored as ``2026-04-01T00:00:00+00:00`` and the request is expired when
  ``now >= expires``. A date-time is used as written (converted to UTC).
* ``select``/``exclude``: a string is split on whitespace as dbt splits
  ``--select "a b"``; list items are split the same way (the schema already forbids
  spaces inside an item). Empty parts disappear and exact repeats are dropped, keeping the
  first occurrence, so the tuple is exactly the selector arguments dbt will receive.
* ``version`` and ``priority`` written as ``1.0`` are accepted by the schema (JSON Schema
  treats 1.0 as an integer) and stored as ``int``.
* Ordering checks (``not_before < not_after``, ``event_time.start < end``) and the
  existence of the ``timezone`` are policy rules, not part of building the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from rescue_runner.loader import load_document
from rescue_runner.model import (
    BatchSpec,
    DailyWindow,
    DocPath,
    EventTime,
    Finding,
    Override,
    RawDocument,
    Request,
    Severity,
    Window,
)
from rescue_runner.schema import REQUEST_SCHEMA, validate_against_schema

__all__ = ["ID_PATTERN", "build_request", "check_unique_ids", "load_request", "request_id_for"]

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_DATE_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class _Invalid(Exception):
    """A value that cannot be built; carries the finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def request_id_for(path: str) -> str:
    """The request id of a file: its name without the extension (``rescues/a.yaml`` -> ``a``)."""
    return PurePosixPath(path.replace("\\", "/")).stem


def build_request(doc: RawDocument) -> tuple[Request | None, list[Finding]]:
    """Turn a schema-valid document into a ``Request``, or return RR011/RR012 findings.

    Precondition: ``doc`` passed ``validate_against_schema`` with the request schema
    (``load_request`` guarantees it); other input may raise ``KeyError``/``TypeError``.
    """
    findings: list[Finding] = []
    request_id = request_id_for(doc.path)
    if not ID_PATTERN.match(request_id):
        findings.append(
            Finding(
                "RR011",
                Severity.ERROR,
                f"the request id '{_clip(request_id)}' (the file name without .yaml) must be 1-80 "
                "characters of lower-case letters, digits, '.', '_' or '-', starting with a letter or "
                "digit; rename the file"
                + (f", e.g. to '{_suggest(request_id)}.yaml'" if _suggest(request_id) else ""),
                doc.path,
                1,
            )
        )
    data: dict[str, Any] = doc.data

    def when(doc_path: DocPath, *, date_means: str = "start") -> datetime | None:
        value = _get(data, doc_path)
        if value is None:
            return None
        try:
            return _parse_instant(value, doc, doc_path, date_means)
        except _Invalid as exc:
            findings.append(exc.finding)
            return None

    window = None
    if "window" in data:
        raw_window = data["window"]
        daily = None
        if "daily" in raw_window:
            daily = DailyWindow(
                start=_clock(raw_window["daily"]["start"]), end=_clock(raw_window["daily"]["end"])
            )
        window = Window(
            not_before=when(("window", "not_before")),
            not_after=when(("window", "not_after")),
            daily=daily,
            timezone=raw_window.get("timezone"),
        )

    event_time = None
    if "event_time" in data:
        start = when(("event_time", "start"))
        end = when(("event_time", "end"))
        if start is not None and end is not None:
            event_time = EventTime(start=start, end=end)

    expires = when(("expires",), date_means="end")

    batches = None
    if "batches" in data:
        raw_batches = data["batches"]
        max_models = raw_batches.get("max_models")
        max_minutes = raw_batches.get("max_minutes")
        batches = BatchSpec(
            max_models=int(max_models) if max_models is not None else None,
            max_minutes=float(max_minutes) if max_minutes is not None else None,
            pause_minutes=float(raw_batches.get("pause_minutes", 0)),
        )

    if findings:
        return None, findings
    request = Request(
        id=request_id,
        path=doc.path,
        version=int(data["version"]),
        reason=data["reason"],
        requested_by=data["requested_by"],
        select=_selectors(data["select"]),
        exclude=_selectors(data.get("exclude", ())),
        full_refresh=bool(data.get("full_refresh", False)),
        ticket=data.get("ticket"),
        window=window,
        batches=batches,
        event_time=event_time,
        expires=expires,
        priority=int(data.get("priority", 0)),
        overrides=tuple(
            Override(code=o["code"], approved_by=o["approved_by"], reason=o["reason"])
            for o in data.get("overrides", ())
        ),
        content_hash=doc.content_hash,
        lines=dict(doc.lines),
    )
    return request, []


def check_unique_ids(requests: Iterable[Request]) -> list[Finding]:
    """RR013 for every request whose id another request (another folder, same file name) also uses."""
    by_id: dict[str, list[Request]] = {}
    for request in requests:
        by_id.setdefault(request.id, []).append(request)
    findings = []
    for request_id, group in sorted(by_id.items()):
        paths = sorted({r.path for r in group})
        if len(group) < 2:
            continue
        for request in sorted(group, key=lambda r: r.path):
            others = [p for p in paths if p != request.path] or paths
            findings.append(
                Finding(
                    "RR013",
                    Severity.ERROR,
                    f"request id '{request_id}' is also used by {', '.join(others)}; ids must be unique: "
                    "rename one of the files",
                    request.path,
                    1,
                )
            )
    return findings


def check_reused_ids(requests: Iterable[Request],
                     finished: Mapping[str, tuple[str, str | None]]) -> list[Finding]:
    """RR014 for every request whose id already reached an end with other content.

    ``finished`` maps a request id to its outcome and the content hash it was validated with,
    as the audit trail records them.
    """
    findings = []
    for request in requests:
        if request.id not in finished:
            continue
        outcome, content_hash = finished[request.id]
        if content_hash is None or content_hash == request.content_hash:
            continue  # the same file (or a trail that never recorded its content: nothing to compare)
        findings.append(Finding(
            "RR014", Severity.ERROR,
            f"request id '{request.id}' was already used by a request that ended {outcome} (audit branch); "
            "ids are used once and this file would never run: choose a new id (rename the file)",
            request.path, 1))
    return findings


def load_request(path: Path, display_path: str | None = None) -> tuple[Request | None, list[Finding]]:
    """Load, schema-check and build one request file; ``(None, findings)`` at the first failing step."""
    doc, findings = load_document(path, display_path)
    if doc is None or any(f.blocking for f in findings):
        return None, findings
    schema_findings = validate_against_schema(doc, REQUEST_SCHEMA)
    if any(f.blocking for f in schema_findings):
        return None, findings + schema_findings
    request, build_findings = build_request(doc)
    return request, findings + schema_findings + build_findings


def _selectors(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    # dbt splits each --select argument on spaces; normalized parts hold no whitespace at all.
    parts = [part for item in items for part in item.split()]
    return tuple(dict.fromkeys(parts))


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _parse_instant(value: str, doc: RawDocument, doc_path: DocPath, date_means: str) -> datetime:
    """A UTC datetime from an ISO date or aware date-time; ``_Invalid`` (RR012) if it is not real."""
    line = doc.line_of(doc_path) or 1
    where = ".".join(str(p) for p in doc_path)
    if _DATE_ONLY.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError as exc:
            raise _Invalid(
                _rr012(doc, line, f"{where}: '{value}' is not a real date ({exc}); fix the date")
            ) from None
        midnight = datetime.combine(day, time(0), tzinfo=UTC)
        return midnight + timedelta(days=1) if date_means == "end" else midnight
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _Invalid(
            _rr012(doc, line, f"{where}: '{_clip(value)}' is not a real date-time ({exc}); fix it")
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Invalid(
            _rr012(
                doc,
                line,
                f"{where}: '{_clip(value)}' has no timezone; add 'Z' for UTC or an offset like +01:00",
            )
        )
    return parsed.astimezone(UTC)


def _rr012(doc: RawDocument, line: int, message: str) -> Finding:
    return Finding("RR012", Severity.ERROR, message, doc.path, line)


def _get(data: dict[str, Any], doc_path: DocPath) -> Any:
    value: Any = data
    for part in doc_path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _suggest(name: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    slug = re.sub(r"-{2,}", "-", slug)[:80]
    return slug if ID_PATTERN.match(slug) else ""


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
