"""Is the shared dbt queue free enough for one more batch? (pure; no Prefect import)

The Prefect adapter takes a ``ContentionSnapshot`` of the queue; ``decide``
turns it into a go/wait ``Decision`` with reasons a human can check, e.g.
``wait: 4/5 slots busy, nightly_marts due in 12 min; needs 3 free (1 + 1 reserved + 1 heavy)``.

The rule: a batch needs one slot, plus ``heavy_extra_slots`` when heavy, plus
room kept for scheduled work: ``reserve_slots`` or the number of scheduled runs
due within the look-ahead (late ones included), whichever is larger. Free
slots are those of the tighter of the queue's and the pool's concurrency
limits; a queue without a limit is taken to have ``queue_concurrency`` slots
from rescue.yaml. No worker online, or a paused queue or pool, means wait.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .config import PrefectSettings

# A scheduled run this far past its start time counts as late (Prefect's own
# "Late" state name is also honoured).
LATE_AFTER = timedelta(seconds=60)
_SHOWN_DUE = 3  # due runs named in the summary line


@dataclass(frozen=True)
class DueRun:
    """A SCHEDULED flow run in the queue, expected to start within the look-ahead (or late)."""

    name: str
    deployment: str | None
    expected_start: datetime
    state_name: str = "Scheduled"

    @property
    def label(self) -> str:
        return self.deployment or self.name


@dataclass(frozen=True)
class ContentionSnapshot:
    """What the Prefect API said about the work pool and queue at ``taken_at``.

    ``*_busy`` count RUNNING, PENDING and CANCELLING flow runs. ``due`` holds
    SCHEDULED runs in the queue with an expected start before ``taken_at`` +
    look-ahead, soonest first. ``workers_online`` counts workers of the pool
    with a recent heartbeat.
    """

    work_pool: str
    work_queue: str
    queue_limit: int | None
    pool_limit: int | None
    queue_busy: int
    pool_busy: int
    due: tuple[DueRun, ...]
    workers_online: int
    taken_at: datetime
    lookahead_minutes: int = 30
    queue_paused: bool = False
    pool_paused: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContentionSnapshot:
        """Build from plain data (test cases, JSON reports); datetimes as ISO strings."""
        due = tuple(
            DueRun(name=r["name"], deployment=r.get("deployment"),
                   expected_start=_dt(r["expected_start"]), state_name=r.get("state_name", "Scheduled"))
            for r in d.get("due", ())
        )
        return cls(
            work_pool=d.get("work_pool", "rescue"),
            work_queue=d.get("work_queue", "dbt"),
            queue_limit=d.get("queue_limit"),
            pool_limit=d.get("pool_limit"),
            queue_busy=int(d.get("queue_busy", 0)),
            pool_busy=int(d.get("pool_busy", d.get("queue_busy", 0))),
            due=due,
            workers_online=int(d.get("workers_online", 1)),
            taken_at=_dt(d["taken_at"]),
            lookahead_minutes=int(d.get("lookahead_minutes", 30)),
            queue_paused=bool(d.get("queue_paused", False)),
            pool_paused=bool(d.get("pool_paused", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "work_pool": self.work_pool,
            "work_queue": self.work_queue,
            "queue_limit": self.queue_limit,
            "pool_limit": self.pool_limit,
            "queue_busy": self.queue_busy,
            "pool_busy": self.pool_busy,
            "due": [{"name": r.name, "deployment": r.deployment,
                     "expected_start": r.expected_start.isoformat(), "state_name": r.state_name}
                    for r in self.due],
            "workers_online": self.workers_online,
            "taken_at": self.taken_at.isoformat(),
            "lookahead_minutes": self.lookahead_minutes,
            "queue_paused": self.queue_paused,
            "pool_paused": self.pool_paused,
        }


@dataclass(frozen=True)
class Decision:
    """go or wait; ``reasons[0]`` is the one-line summary, the rest are details."""

    go: bool
    reasons: tuple[str, ...]
    free_slots: int | None = None
    needed_slots: int | None = None

    @property
    def summary(self) -> str:
        return self.reasons[0] if self.reasons else ("go" if self.go else "wait")

    def to_dict(self) -> dict[str, Any]:
        return {"go": self.go, "reasons": list(self.reasons),
                "free_slots": self.free_slots, "needed_slots": self.needed_slots}


def decide(snapshot: ContentionSnapshot, *, heavy: bool, settings: PrefectSettings,
           now: datetime) -> Decision:
    """Decide whether one batch may be submitted now, with human reasons."""
    s = snapshot
    details: list[str] = []
    blockers: list[str] = []

    # The tighter of the queue and pool limits decides the free slots.
    limits = [(lim, busy, kind, name) for lim, busy, kind, name in (
        (s.queue_limit, s.queue_busy, "queue", s.work_queue),
        (s.pool_limit, s.pool_busy, "pool", s.work_pool)) if lim is not None]
    if not limits:
        limits = [(settings.queue_concurrency, s.queue_busy, "queue", s.work_queue)]
        details.append(f"queue {s.work_queue} has no concurrency limit; counting "
                       f"{settings.queue_concurrency} slots (prefect.queue_concurrency)")
    limit, busy, kind, name = min(limits, key=lambda t: (t[0] - t[1], t[2] != "queue"))
    free = max(0, limit - busy)
    if kind == "pool":
        details.append(f"work pool {name} is the tighter limit: {busy}/{limit} slots busy")

    due = sorted(s.due, key=lambda r: r.expected_start)
    late = [r for r in due if r.state_name == "Late" or r.expected_start <= now - LATE_AFTER]
    reserve = max(settings.reserve_slots, len(due))
    heavy_extra = settings.heavy_extra_slots if heavy else 0
    needed = 1 + reserve + heavy_extra

    if s.workers_online <= 0:
        blockers.append(f"no worker online for work pool {s.work_pool}")
    if s.pool_paused:
        blockers.append(f"work pool {s.work_pool} is paused")
    if s.queue_paused:
        blockers.append(f"work queue {s.work_queue} is paused")
    if late:
        details.append(f"{len(late)} late scheduled run(s): "
                       + ", ".join(f"{r.label} due {_ago(r.expected_start, now)}" for r in late[:_SHOWN_DUE]))
    if due:
        details.append(f"{len(due)} scheduled run(s) due within {s.lookahead_minutes} min keep "
                       f"{len(due)} slot(s) free" + ("" if len(due) >= settings.reserve_slots
                                                     else f" (reserve is {settings.reserve_slots})"))
    if heavy:
        details.append(f"heavy batch: needs {heavy_extra} extra free slot(s)")
    go = not blockers and free >= needed

    head = f"{busy}/{limit} slots busy"
    if due:
        shown = ", ".join(f"{r.label} {_when(r.expected_start, now)}" for r in due[:_SHOWN_DUE])
        more = f" (+{len(due) - _SHOWN_DUE} more)" if len(due) > _SHOWN_DUE else ""
        head += f", {shown}{more}"
    parts = [f"1 + {reserve} reserved"] + ([f"{heavy_extra} heavy"] if heavy_extra else [])
    need = f"needs {needed} free ({' + '.join(parts)}), {free} free"
    summary = f"{'go' if go else 'wait'}: " + "; ".join([*blockers, head, need])
    return Decision(go=go, reasons=(summary, *blockers, *details), free_slots=free, needed_slots=needed)


def _minutes(delta: timedelta) -> int:
    return int((delta.total_seconds() + 30) // 60)


def _when(start: datetime, now: datetime) -> str:
    if start <= now - LATE_AFTER:
        return f"late by {_minutes(now - start)} min"
    if start <= now:
        return "due now"
    return f"due in {_minutes(start - now)} min"


def _ago(start: datetime, now: datetime) -> str:
    return f"{_minutes(now - start)} min ago"


def _dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
