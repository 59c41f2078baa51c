"""The audit trail as data: events, their JSON and file names, and request state as a fold.

Pure: no git, no clock, no I/O. The store (``adapters/git_audit.py``) writes one file per
event on the audit branch; everything the runner and ``rescue status`` know about a request
is ``derive(events)``, so a runner that dies anywhere rebuilds its state from the branch.

An event holds structured fields only. Every event type has a fixed set of allowed field
names (``FIELDS``) and values must be JSON scalars, lists or mappings of them: an event
cannot carry an environment value or a free-form blob by accident.

File name (sortable, unique)::

    events/<request id>/<UTC time>-<seq>-<type>-<event id>.json
    events/2026-11-23-int-orders-hotfix/20261123T101500.000000Z-000003-batch_submitted-3f9c2a1b.json

``seq`` counts the events of one request from 1; only the lock holder writes, so a gap or a
repeat is an inconsistency (``check_consistency``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .model import PlannedBatch
from .redact import redact

SCHEMA_VERSION = 1
EVENTS_DIR = "events"

REQUEST_VALIDATED = "request_validated"
WAITING = "waiting"
BATCH_SUBMITTED = "batch_submitted"
BATCH_RUNNING = "batch_running"
BATCH_FINISHED = "batch_finished"
BATCH_RUNNING_LONG = "batch_running_long"  # announced once per batch run: far beyond its estimate
REQUEST_FINISHED = "request_finished"
OPERATOR_RETRY = "operator_retry"
OPERATOR_CLOSE = "operator_close"  # `rescue cancel` / `rescue close`: the request ends by a person's decision

# Allowed field names per event type (anything else is refused when the event is built).
FIELDS: Mapping[str, frozenset[str]] = {
    REQUEST_VALIDATED: frozenset({
        "path", "content_hash", "fingerprint", "commit", "approved_sha", "merge_order", "priority",
        "requested_by", "ticket", "reason", "batches", "pause_seconds", "warnings", "overrides", "attempt",
        "policy", "digests", "upstream_digest", "event_time"}),
    WAITING: frozenset({"kind", "reason", "until", "batch"}),
    BATCH_SUBMITTED: frozenset({
        "batch", "attempt", "flow_run_id", "url", "name", "idempotency_key", "mode", "adopted", "state",
        "models", "lock", "commit"}),
    BATCH_RUNNING: frozenset({"batch", "attempt", "flow_run_id"}),
    BATCH_FINISHED: frozenset({
        "batch", "attempt", "flow_run_id", "state", "state_name", "counts", "failed_nodes", "reason", "error",
        "rebuilt", "skipped"}),
    BATCH_RUNNING_LONG: frozenset({"batch", "attempt", "flow_run_id", "minutes", "estimate_seconds"}),
    REQUEST_FINISHED: frozenset({"outcome", "reason", "batches_completed", "batches_total", "content_hash"}),
    OPERATOR_RETRY: frozenset({"attempt", "by", "reason", "accept_plan"}),
    OPERATOR_CLOSE: frozenset({"outcome", "by", "reason", "batch", "flow_run_id", "run_state"}),
}
EVENT_TYPES = tuple(FIELDS)

# Outcomes of request_finished; the request is terminal afterwards (until an operator retry).
SUCCEEDED = "succeeded"
FAILED = "failed"
NEEDS_OPERATOR = "needs_operator"
EXPIRED = "expired"
CANCELLED = "cancelled"
CLOSED = "closed"  # an operator closed a failed / needs_operator request for good
OUTCOMES = (SUCCEEDED, FAILED, NEEDS_OPERATOR, EXPIRED, CANCELLED, CLOSED)

# Kinds of waiting.
WINDOW_CLOSED = "window_closed"
QUEUE_BUSY = "queue_busy"
PAUSE = "pause"
AFTER_REQUEST = "after_request"  # a request merged earlier that shares lineage goes first
WAIT_KINDS = (WINDOW_CLOSED, QUEUE_BUSY, PAUSE, AFTER_REQUEST)

# Batch states as recorded (lower case; Prefect's final state types map onto the last five).
B_SUBMITTED = "submitted"
B_RUNNING = "running"
B_COMPLETED = "completed"
B_FAILED = "failed"
B_CRASHED = "crashed"
B_CANCELLED = "cancelled"
B_MISSING = "missing"  # the run vanished from Prefect
B_UNKNOWN = "unknown"  # e.g. an embedded run whose runner died: nobody can say how it ended
BATCH_FINAL_STATES = (B_COMPLETED, B_FAILED, B_CRASHED, B_CANCELLED, B_MISSING, B_UNKNOWN)

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_EVENT_ID = re.compile(r"^[0-9a-f]{8,32}$")
_TIME_FMT = "%Y%m%dT%H%M%S.%fZ"


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return type(value)(_redacted(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _redacted(v) for k, v in value.items()}
    return value


class AuditError(ValueError):
    """An event that cannot be built or read (unknown type or field, bad id, bad JSON)."""


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened to one request. ``at`` is UTC; ``fields`` are plain JSON data."""

    type: str
    request_id: str
    at: datetime
    seq: int
    event_id: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    runner: str = ""  # holder id of the runner that wrote it (host:pid:nonce)
    prev: str = ""  # digest of the request's previous event ("" for its first): tamper evidence

    def __post_init__(self) -> None:
        if self.type not in FIELDS:
            raise AuditError(f"unknown event type {self.type!r}")
        if not _ID.match(self.request_id):
            raise AuditError(f"bad request id {self.request_id!r}")
        if not _EVENT_ID.match(self.event_id):
            raise AuditError(f"bad event id {self.event_id!r}")
        if self.seq < 1:
            raise AuditError(f"seq must be >= 1, got {self.seq}")
        if self.at.tzinfo is None:
            raise AuditError("event time must be timezone-aware")
        unknown = sorted(set(self.fields) - FIELDS[self.type])
        if unknown:
            raise AuditError(f"{self.type}: fields {unknown} are not allowed")
        for k, v in self.fields.items():
            _check_value(v, f"{self.type}.{k}")
        # The trail is permanent: no credential ever enters it (URLs, error texts from git/dbt/Prefect).
        object.__setattr__(self, "fields", {k: _redacted(v) for k, v in self.fields.items()})
        object.__setattr__(self, "at", self.at.astimezone(UTC))

    @property
    def path(self) -> str:
        """Where the event lives on the audit branch."""
        return (f"{EVENTS_DIR}/{self.request_id}/{self.at.strftime(_TIME_FMT)}-{self.seq:06d}-"
                f"{self.type}-{self.event_id}.json")

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the documented key order (fields sorted by name)."""
        return {
            "schema": SCHEMA_VERSION,
            "type": self.type,
            "request_id": self.request_id,
            "seq": self.seq,
            "at": self.at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "event_id": self.event_id,
            "runner": self.runner,
            "prev": self.prev,
            "fields": _sorted(self.fields),
        }

    def to_json(self) -> str:
        """Stable JSON: the same event always gives the same bytes."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    @property
    def digest(self) -> str:
        """``sha256:`` of the event's JSON: the next event of the request records it as ``prev``."""
        return "sha256:" + hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditEvent:
        """Read an event written by ``to_json``; AuditError when it is not one."""
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or d.get("schema") != SCHEMA_VERSION:
                raise AuditError(f"not an audit event of schema {SCHEMA_VERSION}")
            at = datetime.fromisoformat(str(d["at"]).replace("Z", "+00:00"))
            return cls(type=str(d["type"]), request_id=str(d["request_id"]), at=at, seq=int(d["seq"]),
                       event_id=str(d["event_id"]), fields=dict(d.get("fields") or {}),
                       runner=str(d.get("runner", "")), prev=str(d.get("prev") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, AuditError):
                raise
            raise AuditError(f"not an audit event: {exc}") from exc


def _check_value(v: Any, where: str) -> None:
    if v is None or isinstance(v, bool | int | str):
        return
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise AuditError(f"{where}: not a finite number")
        return
    if isinstance(v, list | tuple):
        for i, item in enumerate(v):
            _check_value(item, f"{where}[{i}]")
        return
    if isinstance(v, Mapping):
        for k, item in v.items():
            if not isinstance(k, str):
                raise AuditError(f"{where}: keys must be strings")
            _check_value(item, f"{where}.{k}")
        return
    raise AuditError(f"{where}: {type(v).__name__} is not plain JSON data")


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def order(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """Events of one request in the order they happened (seq, then time, then id)."""
    return sorted(events, key=lambda e: (e.seq, e.at, e.event_id))


def timeline(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """Events of many requests, oldest first (``rescue log``)."""
    return sorted(events, key=lambda e: (e.at, e.request_id, e.seq, e.event_id))


# ---- state: a fold over events -------------------------------------------------------------

@dataclass(frozen=True)
class BatchRecord:
    """What the trail says about one batch in one attempt."""

    index: int
    attempt: int
    state: str
    flow_run_id: str | None = None
    url: str | None = None
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    adopted: bool = False
    state_name: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    failed_nodes: tuple[str, ...] = ()
    running_long: bool = False  # the running-long alert was given for this run
    error: str | None = None  # a failed batch: the first failing node and dbt's message
    rebuilt: tuple[str, ...] = ()  # models the run rebuilt before it ended
    skipped: tuple[str, ...] = ()  # nodes dbt skipped (downstream of a failure)
    commit: str | None = None  # the commit the run builds

    @property
    def in_flight(self) -> bool:
        return self.state in (B_SUBMITTED, B_RUNNING)


@dataclass(frozen=True)
class RequestState:
    """A request as the audit trail tells it.

    ``status``: ``pending`` (never seen, or validated and about to act), ``waiting``,
    ``submitted``, ``running``, or a terminal outcome (``OUTCOMES``).
    """

    request_id: str
    status: str = "pending"
    reason: str | None = None
    attempt: int = 1
    content_hash: str | None = None
    fingerprint: str | None = None
    path: str | None = None
    priority: int = 0
    merge_order: int | None = None
    plan: tuple[PlannedBatch, ...] = ()
    pause_seconds: float = 0.0
    batches: Mapping[int, BatchRecord] = field(default_factory=dict)  # current attempt, by index
    history: tuple[BatchRecord, ...] = ()  # every record of every attempt, in order
    waiting_kind: str | None = None
    waiting_batch: int | None = None
    waiting_since: datetime | None = None
    waiting_until: datetime | None = None  # when the wait ends by itself (pause, window), if known
    outcome: str | None = None
    last_seq: int = 0
    validated_at: datetime | None = None
    finished_at: datetime | None = None
    last_digest: str = ""  # digest of the last event: the next one's ``prev``
    recorded: Mapping[str, Any] = field(default_factory=dict)  # fields of the last request_validated
    plan_attempt: int = 1  # the attempt since which the current plan holds (``retry --accept-plan``)

    @property
    def terminal(self) -> bool:
        return self.outcome is not None

    @property
    def validated(self) -> bool:
        return self.fingerprint is not None

    @property
    def started(self) -> bool:
        """Whether any batch was ever submitted (any attempt)."""
        return bool(self.history)

    @property
    def in_flight(self) -> BatchRecord | None:
        return next((b for b in self.batches.values() if b.in_flight), None)

    @property
    def done(self) -> set[int]:
        """Indexes of the current plan's completed batches (a retry keeps them; a new plan does not)."""
        return {b.index for b in self.history if b.state == B_COMPLETED and b.attempt >= self.plan_attempt}

    @property
    def completed(self) -> int:
        """Batches of the current plan completed successfully (over all attempts since it holds)."""
        return len(self.done)

    @property
    def next_batch(self) -> PlannedBatch | None:
        """The first approved batch not completed yet (None when all are)."""
        done = self.done
        return next((b for b in self.plan if b.index not in done), None)

    @property
    def last_finished(self) -> BatchRecord | None:
        """The most recently finished batch record of the current attempt."""
        done = [b for b in self.batches.values() if b.state in BATCH_FINAL_STATES]
        return max(done, key=lambda b: (b.finished_at or datetime.min.replace(tzinfo=UTC), b.index),
                   default=None)

    @property
    def attempt_commit(self) -> str | None:
        """The commit the current attempt builds: every batch of one attempt builds the same one."""
        return next((b.commit for _, b in sorted(self.batches.items()) if b.commit), None)

    @property
    def last_completed(self) -> BatchRecord | None:
        done = [b for b in self.history if b.state == B_COMPLETED and b.attempt >= self.plan_attempt]
        return done[-1] if done else None


def derive(request_id: str, events: Iterable[AuditEvent]) -> RequestState:
    """Fold a request's events into its state. Tolerant: ``check_consistency`` says what is odd."""
    s = RequestState(request_id)
    for e in order(events):
        s = apply_event(s, e)
    return s


def apply_event(s: RequestState, e: AuditEvent) -> RequestState:
    """One step of the fold."""
    f = e.fields
    s = replace(s, last_seq=max(s.last_seq, e.seq), last_digest=e.digest)
    if e.type == REQUEST_VALIDATED:
        return replace(
            s, status="pending", reason=None, content_hash=f.get("content_hash"),
            fingerprint=f.get("fingerprint"), path=f.get("path"), priority=int(f.get("priority") or 0),
            merge_order=f.get("merge_order"),
            plan=tuple(PlannedBatch.from_dict(b) for b in f.get("batches") or ()),
            pause_seconds=float(f.get("pause_seconds") or 0.0), validated_at=e.at, recorded=dict(f))
    if e.type == WAITING:
        same = s.waiting_kind == f.get("kind") and s.waiting_batch == f.get("batch")
        return replace(s, status="waiting", reason=f.get("reason"), waiting_kind=f.get("kind"),
                       waiting_batch=f.get("batch"), waiting_since=s.waiting_since if same else e.at,
                       waiting_until=_instant(f.get("until")))
    if e.type == BATCH_SUBMITTED:
        rec = BatchRecord(index=int(f["batch"]), attempt=int(f.get("attempt") or s.attempt),
                          state=B_SUBMITTED, flow_run_id=f.get("flow_run_id"), url=f.get("url"),
                          submitted_at=e.at, adopted=bool(f.get("adopted")), commit=f.get("commit"))
        return _with_record(replace(s, status="submitted", reason=None, waiting_kind=None,
                                    waiting_batch=None, waiting_since=None), rec)
    if e.type == BATCH_RUNNING:
        idx = int(f["batch"])
        old = s.batches.get(idx)
        if old is None:
            return s
        return _with_record(replace(s, status="running"), replace(old, state=B_RUNNING), replace_last=True)
    if e.type == BATCH_RUNNING_LONG:
        old = s.batches.get(int(f["batch"]))
        if old is None or old.flow_run_id != f.get("flow_run_id"):
            return s
        return _with_record(s, replace(old, running_long=True), replace_last=True)
    if e.type == BATCH_FINISHED:
        idx = int(f["batch"])
        old = s.batches.get(idx) or BatchRecord(idx, int(f.get("attempt") or s.attempt), B_SUBMITTED,
                                                flow_run_id=f.get("flow_run_id"))
        rec = replace(old, state=str(f.get("state") or B_UNKNOWN), finished_at=e.at,
                      state_name=f.get("state_name"), counts=dict(f.get("counts") or {}),
                      failed_nodes=tuple(f.get("failed_nodes") or ()), error=f.get("error"),
                      rebuilt=tuple(f.get("rebuilt") or ()), skipped=tuple(f.get("skipped") or ()))
        status = "pending" if rec.state == B_COMPLETED else s.status
        return _with_record(replace(s, status=status, reason=f.get("reason")), rec,
                            replace_last=idx in s.batches)
    if e.type == REQUEST_FINISHED:
        # A request that ended before it was validated (expired, withdrawn) records its content here,
        # so "ids are used once" can tell the same file from a new one with the same id.
        return replace(s, status=str(f["outcome"]), outcome=str(f["outcome"]), reason=f.get("reason"),
                       finished_at=e.at, waiting_kind=None, waiting_batch=None, waiting_since=None,
                       content_hash=s.content_hash or f.get("content_hash"))
    if e.type == OPERATOR_CLOSE:
        outcome = str(f.get("outcome") or CLOSED)
        closed = f.get("batch")
        old = s.batches.get(int(closed)) if closed is not None else None
        if old is not None and old.in_flight:  # its run was cancelled with the request
            s = _with_record(s, replace(old, state=B_CANCELLED, finished_at=e.at,
                                        state_name=f.get("run_state")), replace_last=True)
        return replace(s, status=outcome, outcome=outcome, finished_at=e.at,
                       reason=f"{outcome} by {f.get('by')}: {f.get('reason')}", waiting_kind=None,
                       waiting_batch=None, waiting_since=None)
    if e.type == OPERATOR_RETRY:
        s = replace(s, status="pending", outcome=None, reason=f.get("reason"),
                    attempt=int(f.get("attempt") or s.attempt + 1), batches={}, finished_at=None,
                    waiting_kind=None, waiting_batch=None, waiting_since=None)
        if not s.started or f.get("accept_plan"):
            # Nothing ran yet, or the operator accepts the plan as it is now (``--accept-plan``): the
            # request is validated afresh and its new plan recorded; an accepted plan runs whole.
            s = replace(s, fingerprint=None, content_hash=None, plan=(), pause_seconds=0.0, recorded={},
                        plan_attempt=s.attempt if f.get("accept_plan") else s.plan_attempt)
        return s
    return s


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _with_record(s: RequestState, rec: BatchRecord, *, replace_last: bool = False) -> RequestState:
    batches = dict(s.batches)
    batches[rec.index] = rec
    history = list(s.history)
    if replace_last:
        for i in range(len(history) - 1, -1, -1):
            if history[i].index == rec.index and history[i].attempt == rec.attempt:
                history[i] = rec
                break
        else:
            history.append(rec)
    else:
        history.append(rec)
    return replace(s, batches=batches, history=tuple(history))


def group(events: Iterable[AuditEvent]) -> dict[str, list[AuditEvent]]:
    """Events by request id."""
    out: dict[str, list[AuditEvent]] = {}
    for e in events:
        out.setdefault(e.request_id, []).append(e)
    return out


def derive_all(events: Iterable[AuditEvent]) -> dict[str, RequestState]:
    """The state of every request that has events."""
    return {rid: derive(rid, evs) for rid, evs in sorted(group(events).items())}


# ---- tamper evidence and readability ---------------------------------------------------------

def chain_problems(events: Sequence[AuditEvent]) -> list[str]:
    """Breaks in one request's hash chain: each event's ``prev`` is the digest of the one before.

    Checked from the last operator retry on (an operator who reopens a request has looked at the
    trail before it). A break names the event that no longer matches what was written after it.
    """
    evs = order(events)
    start = max((i for i, e in enumerate(evs) if e.type == OPERATOR_RETRY), default=0)
    out = []
    for i in range(max(1, start), len(evs)):
        before, e = evs[i - 1], evs[i]
        if e.prev != before.digest:
            out.append(f"event #{before.seq} ({before.path}) was changed, replaced or inserted after "
                       f"event #{e.seq} was written (hash chain broken)")
    if evs and start == 0 and evs[0].prev:
        out.append(f"event #{evs[0].seq} ({evs[0].path}) follows an event that is gone (hash chain broken)")
    return out


def examine(request_id: str, events: Sequence[AuditEvent],
            unreadable: Sequence[str] = ()) -> tuple[RequestState, list[str]]:
    """A request's state and why its trail cannot be trusted (empty when it can).

    Never raises: an event whose fields cannot be folded, a file on the branch that is not an
    event, a broken hash chain or an inconsistency (``check_consistency``) is a problem, and
    the state is then only good for naming the request and writing its next event.
    """
    problems = [f"{p}: not a readable audit event" for p in unreadable]
    try:
        state = derive(request_id, events)
    except (KeyError, TypeError, ValueError) as exc:
        evs = order(events)
        last = evs[-1] if evs else None
        state = RequestState(request_id, last_seq=last.seq if last else 0,
                             last_digest=last.digest if last else "")
        problems.append(f"an event cannot be read ({type(exc).__name__}: {exc})")
        return state, problems + chain_problems(events)
    problems += chain_problems(events)
    problems += [p.removeprefix(f"{request_id}: ") for p in check_consistency(events)]
    return state, problems


def examine_all(events: Iterable[AuditEvent],
                unreadable: Sequence[str] = ()) -> dict[str, tuple[RequestState, list[str]]]:
    """``examine`` for every request with events (or unreadable files under ``events/<id>/``)."""
    by_req = group(events)
    bad: dict[str, list[str]] = {}
    for path in unreadable:
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == EVENTS_DIR:
            bad.setdefault(parts[1], []).append(path)
    return {rid: examine(rid, by_req.get(rid, []), bad.get(rid, ()))
            for rid in sorted(set(by_req) | set(bad)) if _ID.match(rid)}


# ---- consistency ---------------------------------------------------------------------------

def check_consistency(events: Sequence[AuditEvent]) -> list[str]:
    """Problems in a request trail (empty when consistent). Used by tests and ``rescue status``.

    Checked: seq is 1..n without gap or repeat; nothing but an operator retry after a
    request finished; a batch is submitted at most once per attempt, only after every
    earlier batch completed, and finished at most once; event ids are unique.
    """
    problems: list[str] = []
    by_req = group(events)
    ids = [e.event_id for e in events]
    if len(ids) != len(set(ids)):
        problems.append("duplicate event ids")
    for rid, evs in sorted(by_req.items()):
        evs = order(evs)
        seqs = [e.seq for e in evs]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"{rid}: seq is {seqs[:20]}, not 1..{len(seqs)}")
        s = RequestState(rid)
        submitted: set[tuple[int, int]] = set()
        finished: set[tuple[int, int]] = set()
        for e in evs:
            f = e.fields
            if s.terminal and e.type not in (OPERATOR_RETRY, OPERATOR_CLOSE):
                problems.append(f"{rid}: {e.type} (seq {e.seq}) after the request finished")
            if e.type == BATCH_SUBMITTED:
                key = (int(f["batch"]), int(f.get("attempt") or s.attempt))
                if key in submitted:
                    problems.append(f"{rid}: batch {key[0]} attempt {key[1]} submitted twice")
                submitted.add(key)
                if not s.validated:
                    problems.append(f"{rid}: batch {key[0]} submitted before the request was validated")
                done = s.done
                earlier = [b.index for b in s.plan if b.index < key[0]]
                if any(i not in done for i in earlier):
                    problems.append(f"{rid}: batch {key[0]} submitted before batch(es) "
                                    f"{[i for i in earlier if i not in done]} completed")
                if s.in_flight is not None:
                    problems.append(f"{rid}: batch {key[0]} submitted while batch {s.in_flight.index} "
                                    "was in flight")
            if e.type == BATCH_FINISHED:
                key = (int(f["batch"]), int(f.get("attempt") or s.attempt))
                if key not in submitted:
                    problems.append(f"{rid}: batch {key[0]} finished but never submitted")
                if key in finished:
                    problems.append(f"{rid}: batch {key[0]} attempt {key[1]} finished twice")
                finished.add(key)
            if e.type == REQUEST_FINISHED and f.get("outcome") not in OUTCOMES:
                problems.append(f"{rid}: unknown outcome {f.get('outcome')!r}")
            if e.type == REQUEST_FINISHED and f.get("outcome") == SUCCEEDED and s.next_batch is not None:
                problems.append(f"{rid}: succeeded with batch {s.next_batch.index} not completed")
            s = apply_event(s, e)
    return problems
