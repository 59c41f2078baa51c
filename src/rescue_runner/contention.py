"""May a batch go now? A decision over a forecast of the queue's slots (pure; no Prefect import).

The Prefect adapter takes a ``ContentionSnapshot`` of the work pool; ``decide`` turns it
and an ``Ask`` (the batch's estimate, whether it is heavy, when its window closes) into a
go/wait ``Decision`` whose first line a person can check, e.g.::

    wait: queue dbt would hold 5 of 4 usable slots at 21:31 UTC (limit 5, 1 reserved):
    finance_hourly, nightly_marts, orders_hourly due, batch (2 slots); next fit
    23:40 Europe/Berlin (22:40 UTC), after finance_hourly ends

The forecast: over ``[now, now + duration)``, where the duration is the batch's estimate
plus a safety margin (``prefect.forecast``), every slot holder is an interval: a running
run until its start plus its deployment's typical duration (the median of its recent
completed runs in Prefect; ``default_run_minutes`` without history; an overdue run is
given one more margin), a scheduled run from its expected start (now when late) for its
typical duration, a slot promised to a rescue that waits ahead of this one. The batch
takes one slot, ``1 + heavy_extra_slots`` when heavy. It goes when, at every instant, the
slots held plus its own stay within the limit minus ``reserve_slots``, for the queue and,
when the work pool has a limit, for the pool (whose runs in every queue count), and when
it is expected to end before its window closes.

The requirement never exceeds what the queue can offer: the reserve leaves at least one
slot usable and a heavy batch weighs at most every usable slot. When the batch fits
nowhere before its window closes, the decision says so with the numbers and proposes the
split that would fit the longest gap. No worker online, or a paused queue or pool, means
wait.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .config import PrefectSettings
from .forecast import Occupant, Scope, earliest_fit, longest_gap

# A scheduled run this far past its start time counts as late (Prefect's own
# "Late" state name is also honoured).
LATE_AFTER = timedelta(seconds=60)
_SHOWN = 3  # slot holders named in a summary line
_MAX_SPLIT = 6  # a split into more batches than this is not proposed (the gap is too short)


@dataclass(frozen=True)
class DueRun:
    """A SCHEDULED flow run of the pool, expected to start within the look-ahead (or late).

    ``work_queue`` None: the rescue queue itself.
    """

    name: str
    deployment: str | None
    expected_start: datetime
    state_name: str = "Scheduled"
    work_queue: str | None = None

    @property
    def label(self) -> str:
        return self.deployment or self.name


@dataclass(frozen=True)
class ActiveRun:
    """A RUNNING, PENDING or CANCELLING flow run of the pool.

    ``started`` None: not started yet (pending); ``expected_seconds`` overrides the
    deployment's typical duration when the caller knows better (a rescue batch's estimate).
    """

    name: str
    deployment: str | None
    started: datetime | None = None
    work_queue: str | None = None
    expected_seconds: float | None = None

    @property
    def label(self) -> str:
        return self.deployment or self.name


@dataclass(frozen=True)
class ContentionSnapshot:
    """What the Prefect API said about the work pool and queue at ``taken_at``.

    ``*_busy`` count RUNNING, PENDING and CANCELLING flow runs; ``running`` lists them
    (when it lists fewer than the counts, the rest are taken to end after the default
    duration). ``due`` holds SCHEDULED runs of the pool expected before ``taken_at`` +
    look-ahead, soonest first. ``typical_seconds``: median duration of recent completed
    runs per deployment name. ``workers_online`` counts workers with a recent heartbeat.
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
    running: tuple[ActiveRun, ...] = ()
    typical_seconds: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContentionSnapshot:
        """Build from plain data (test cases, JSON reports); datetimes as ISO strings."""
        queue = d.get("work_queue", "dbt")
        due = tuple(
            DueRun(name=r["name"], deployment=r.get("deployment"),
                   expected_start=_dt(r["expected_start"]), state_name=r.get("state_name", "Scheduled"),
                   work_queue=_other(r.get("work_queue"), queue))
            for r in d.get("due", ())
        )
        running = tuple(
            ActiveRun(name=r["name"], deployment=r.get("deployment"),
                      started=_dt(r["started"]) if r.get("started") else None,
                      work_queue=_other(r.get("work_queue"), queue),
                      expected_seconds=r.get("expected_seconds"))
            for r in d.get("running", ())
        )
        in_queue = sum(1 for r in running if r.work_queue is None)
        queue_busy = int(d.get("queue_busy", in_queue))
        return cls(
            work_pool=d.get("work_pool", "rescue"),
            work_queue=queue,
            queue_limit=d.get("queue_limit"),
            pool_limit=d.get("pool_limit"),
            queue_busy=queue_busy,
            pool_busy=int(d.get("pool_busy", max(queue_busy, len(running)))),
            due=due,
            workers_online=int(d.get("workers_online", 1)),
            taken_at=_dt(d["taken_at"]),
            lookahead_minutes=int(d.get("lookahead_minutes", 30)),
            queue_paused=bool(d.get("queue_paused", False)),
            pool_paused=bool(d.get("pool_paused", False)),
            running=running,
            typical_seconds={str(k): float(v) for k, v in (d.get("typical_seconds") or {}).items()},
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
                     "expected_start": r.expected_start.isoformat(), "state_name": r.state_name,
                     "work_queue": r.work_queue or self.work_queue}
                    for r in self.due],
            "running": [{"name": r.name, "deployment": r.deployment,
                         "started": r.started.isoformat() if r.started else None,
                         "work_queue": r.work_queue or self.work_queue,
                         "expected_seconds": r.expected_seconds} for r in self.running],
            "typical_seconds": dict(self.typical_seconds),
            "workers_online": self.workers_online,
            "taken_at": self.taken_at.isoformat(),
            "lookahead_minutes": self.lookahead_minutes,
            "queue_paused": self.queue_paused,
            "pool_paused": self.pool_paused,
        }


@dataclass(frozen=True)
class Ask:
    """The batch a decision is about, and what holds it back besides the queue.

    ``estimated_seconds`` 0: unknown (``default_run_minutes``). ``window_end``: when the
    request's window closes (None: open-ended), on the asker's clock, which read ``asked_at``
    when it asked (the snapshot's clock is Prefect's: the same in production; a test's
    injected clock is translated). ``timezone``: the request's zone, for the times a person
    reads. ``reserved``: slots promised to rescues that wait ahead of it.
    """

    estimated_seconds: float = 0.0
    heavy: bool = False
    window_end: datetime | None = None
    timezone: str | None = None
    reserved: tuple[Occupant, ...] = ()
    asked_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """go or wait; ``reasons[0]`` is the one-line summary, the rest are details.

    ``binding``: what holds the batch back (None on go). ``next_fit``: when it is expected to
    fit (None: not before its window closes, or unknown). ``duration``: estimate plus margin.
    ``split``: how many batches the request would need to fit the longest gap.
    """

    go: bool
    reasons: tuple[str, ...]
    free_slots: int | None = None
    needed_slots: int | None = None
    binding: str | None = None
    next_fit: datetime | None = None
    duration: timedelta | None = None
    split: int | None = None

    @property
    def summary(self) -> str:
        return self.reasons[0] if self.reasons else ("go" if self.go else "wait")

    @property
    def expected_end(self) -> datetime | None:
        return None if self.next_fit is None or self.duration is None else self.next_fit + self.duration

    def to_dict(self) -> dict[str, Any]:
        return {"go": self.go, "reasons": list(self.reasons), "free_slots": self.free_slots,
                "needed_slots": self.needed_slots, "binding": self.binding,
                "next_fit": _utc(self.next_fit) if self.next_fit else None,
                "duration_seconds": self.duration.total_seconds() if self.duration else None,
                "split": self.split}


def batch_duration(estimated_seconds: float, settings: PrefectSettings) -> timedelta:
    """A batch's estimate (the default when unknown) plus the safety margin."""
    f = settings.forecast
    est = estimated_seconds if estimated_seconds > 0 else f.default_run_minutes * 60
    return timedelta(seconds=est + _margin(est, settings))


def occupants(snapshot: ContentionSnapshot, settings: PrefectSettings, now: datetime,
              *, pool_wide: bool) -> tuple[Occupant, ...]:
    """The slot holders of the queue (``pool_wide``: of every queue of the pool) as intervals."""
    s, f = snapshot, settings.forecast

    def typical(dep: str | None) -> float:
        if dep is not None and dep in s.typical_seconds:
            return s.typical_seconds[dep]
        return f.default_run_minutes * 60

    out: list[Occupant] = []
    running = [r for r in s.running if pool_wide or r.work_queue is None]
    busy = s.pool_busy if pool_wide else s.queue_busy
    unlisted = max(0, busy - len(running))
    for r in running:
        seconds = r.expected_seconds if r.expected_seconds is not None else typical(r.deployment)
        started = r.started or now
        end = max(started + timedelta(seconds=seconds), now + timedelta(seconds=_margin(seconds, settings)))
        out.append(Occupant(r.label, now, end, kind="running"))
    out += [Occupant("unlisted run", now, now + timedelta(seconds=typical(None)), kind="running")] * unlisted
    for d in s.due:
        if pool_wide or d.work_queue is None:
            start = max(d.expected_start, now)
            out.append(Occupant(d.label, start, start + timedelta(seconds=typical(d.deployment))))
    return tuple(out)


def decide(snapshot: ContentionSnapshot, ask: Ask, *, settings: PrefectSettings, now: datetime) -> Decision:
    """Decide whether one batch may be submitted now, with reasons a person can check."""
    s = snapshot
    if ask.window_end is not None and ask.asked_at is not None and ask.asked_at != now:
        ask = replace(ask, window_end=ask.window_end + (now - ask.asked_at), asked_at=now)
    est = timedelta(seconds=ask.estimated_seconds if ask.estimated_seconds > 0
                    else settings.forecast.default_run_minutes * 60)
    duration = batch_duration(ask.estimated_seconds, settings)
    scopes = _scopes(s, ask, settings, now)
    queue_scope = scopes[0]
    # The slots the batch takes where slots are scarcest (a heavy batch's weight is capped at what a
    # scope can offer, so the requirement never exceeds the queue or the pool).
    needed = min(sc.weight for sc in scopes)
    t = _Times(ask.timezone, now)

    details = [f"batch: {_min(est)} min estimated + {_min(duration - est)} min margin, "
               f"{queue_scope.weight} slot(s)" + (" (heavy)" if ask.heavy else "")]
    for sc in scopes:
        details.append(f"{sc.name}: limit {sc.limit}, {sc.reserve} reserved, {sc.capacity} usable; "
                       f"{_holders(sc.occupants, now)}")
    if s.queue_limit is None:
        details.append(f"queue {s.work_queue} has no concurrency limit; counting "
                       f"{settings.queue_concurrency} slots (prefect.queue_concurrency)")
    late = [r for r in s.due if r.state_name == "Late" or r.expected_start <= now - LATE_AFTER]
    if late:
        details.append(f"{len(late)} late scheduled run(s): "
                       + ", ".join(f"{r.label} due {_minutes(now - r.expected_start)} min ago"
                                   for r in late[:_SHOWN]))

    blockers = []
    if s.workers_online <= 0:
        blockers.append(f"no worker online for work pool {s.work_pool}")
    if s.pool_paused:
        blockers.append(f"work pool {s.work_pool} is paused")
    if s.queue_paused:
        blockers.append(f"work queue {s.work_queue} is paused")
    if blockers:
        return Decision(False, ("wait: " + "; ".join(blockers), *details), binding=blockers[0],
                        needed_slots=needed, duration=duration)

    end = now + duration
    over = [(sc, o) for sc in scopes if (o := sc.overflow(now, end)) is not None]
    closes = ask.window_end is not None and end > ask.window_end
    free = min(sc.capacity - _peak_load(sc, now, end) for sc in scopes)
    if not over and not closes:
        sc = max(scopes, key=lambda x: (_peak_load(x, now, end) + x.weight) / x.capacity)
        head = (f"go: {sc.name} peaks at {_peak_load(sc, now, end) + sc.weight} of {sc.capacity} usable "
                "slots "
                f"until {t.fmt(end)} (batch {_min(duration)} min incl. margin)")
        if ask.window_end is not None:
            head += f"; window closes {t.fmt(ask.window_end)}"
        return Decision(True, (head, *details), free_slots=free, needed_slots=needed,
                        next_fit=now, duration=duration)

    if over:
        sc, (load, at, who) = over[0]
        binding = (f"{sc.name} would hold {load + sc.weight} of {sc.capacity} usable slots at {t.fmt(at)} "
                   f"(limit {sc.limit}, {sc.reserve} reserved): {_names(who)}, batch ({sc.weight} slot(s))")
    else:
        assert ask.window_end is not None
        binding = (f"the batch ({_min(duration)} min incl. margin) would end {t.fmt(end)}, "
                   f"after its window closes {t.fmt(ask.window_end)}")
    fit = earliest_fit(scopes, after=now, duration=duration, latest_end=ask.window_end)
    if fit is not None:
        at, freed_by = fit
        after = f", after {freed_by.label} ends" if freed_by is not None else ""
        head = f"wait: {binding}; next fit {t.fmt(at)}{after}"
        return Decision(False, (head, *details), free_slots=free, needed_slots=needed,
                        binding=binding, next_fit=at, duration=duration)
    # Nowhere before the window closes (or within what is known of the schedule).
    assert ask.window_end is not None
    gap, gap_at = longest_gap(scopes, start=now, end=ask.window_end)
    split = _split(est, gap, settings)
    where = f" from {t.fmt(gap_at)}" if gap_at is not None else ""
    cannot = (f"cannot fit before the window closes {t.fmt(ask.window_end)}: the batch needs "
              f"{_min(duration)} min ({_min(est)} estimated + margin) with {queue_scope.weight} slot(s); "
              f"the longest stretch with room is {_min(gap)} min{where}")
    if split is not None:
        cannot += f"; split it into {split} batches of at most {_min(est / split)} min (batches.max_minutes)"
    return Decision(False, (f"wait: {binding}; {cannot}", *details), free_slots=free,
                    needed_slots=needed, binding=binding, duration=duration, split=split)


# ---- helpers -------------------------------------------------------------------------------

def _scopes(s: ContentionSnapshot, ask: Ask, settings: PrefectSettings, now: datetime) -> list[Scope]:
    heavy_weight = 1 + settings.heavy_extra_slots if ask.heavy else 1

    def scope(name: str, limit: int, pool_wide: bool) -> Scope:
        reserve = min(settings.reserve_slots, limit - 1)
        capacity = max(1, limit - reserve)
        held = occupants(s, settings, now, pool_wide=pool_wide) + ask.reserved
        return Scope(name, held, capacity, min(heavy_weight, capacity), limit, reserve)

    out = [scope(f"queue {s.work_queue}", s.queue_limit or settings.queue_concurrency, False)]
    if s.pool_limit is not None:
        out.append(scope(f"work pool {s.work_pool}", s.pool_limit, True))
    return out


def _peak_load(sc: Scope, start: datetime, end: datetime) -> int:
    from .forecast import peak

    return peak(sc.occupants, start, end)[0]


def _margin(est_seconds: float, settings: PrefectSettings) -> float:
    f = settings.forecast
    return max(est_seconds * f.margin_percent / 100, f.margin_minutes * 60)


def _split(est: timedelta, gap: timedelta, settings: PrefectSettings) -> int | None:
    """How many pieces of the estimate fit the gap once each gets its own margin (None: none fit)."""
    f = settings.forecast
    g = gap.total_seconds()
    piece = min(g / (1 + f.margin_percent / 100), g - f.margin_minutes * 60)
    pieces = math.ceil(est.total_seconds() / piece) if piece >= 60 else None
    return max(2, pieces) if pieces is not None and pieces <= _MAX_SPLIT else None


def _holders(held: tuple[Occupant, ...], now: datetime) -> str:
    running = [o for o in held if o.kind == "running"]
    due = [o for o in held if o.kind == "scheduled"]
    reserved = [o for o in held if o.kind == "reserved"]
    parts = [f"{len(running)} running"]
    if due:
        parts.append(f"{len(due)} scheduled (" + ", ".join(
            f"{o.label} {'now' if o.start <= now else f'+{_minutes(o.start - now)} min'} "
            f"for {_minutes(o.end - o.start)} min" for o in due[:_SHOWN])
            + (f", +{len(due) - _SHOWN} more" if len(due) > _SHOWN else "") + ")")
    if reserved:
        parts.append("promised to " + ", ".join(o.label for o in reserved))
    return ", ".join(parts)


def _names(who: tuple[Occupant, ...]) -> str:
    parts = []
    for kind, verb in (("running", "running"), ("scheduled", "due"), ("reserved", "waiting ahead")):
        counts = Counter(o.label for o in who if o.kind == kind)
        if counts:
            shown = [f"{label} x{n}" if n > 1 else label for label, n in sorted(counts.items())]
            more = f" (+{len(shown) - _SHOWN})" if len(shown) > _SHOWN else ""
            parts.append(", ".join(shown[:_SHOWN]) + more + " " + verb)
    return "; ".join(parts) or "nothing"


class _Times:
    """Instants as a person reads them: the request's zone first, then UTC."""

    def __init__(self, tz: str | None, now: datetime) -> None:
        self.zone = ZoneInfo(tz) if tz and tz not in ("UTC", "Etc/UTC") else None
        self.tz, self.now = tz, now

    def fmt(self, at: datetime) -> str:
        u = at.astimezone(UTC)
        same_day = u.date() == self.now.astimezone(UTC).date()
        utc = u.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")
        if self.zone is None:
            return utc
        local = at.astimezone(self.zone)
        same = local.date() == self.now.astimezone(self.zone).date()
        return f"{local:{'%H:%M' if same else '%Y-%m-%d %H:%M'}} {self.tz} ({utc})"


def _min(delta: timedelta) -> int:
    return _minutes(delta)


def _minutes(delta: timedelta) -> int:
    return int((delta.total_seconds() + 30) // 60)


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _other(queue: Any, own: str) -> str | None:
    return None if queue in (None, own) else str(queue)


def _dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


# ---- the expected start of every batch (``rescue plan``) ----------------------------------

@dataclass(frozen=True)
class BatchStart:
    """When a planned batch is expected to start and end (its estimate, without the margin);
    ``start`` None: not within the horizon."""

    index: int
    start: datetime | None
    end: datetime | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": _utc(self.start) if self.start else None,
                "end": _utc(self.end) if self.end else None, "note": self.note}


def expected_starts(batches: Sequence[tuple[float, bool]], *, pause_seconds: float, now: datetime,
                    settings: PrefectSettings, snapshot: ContentionSnapshot | None = None,
                    window: Any = None, max_windows: int = 14) -> tuple[BatchStart, ...]:
    """Expected start and end of each batch ``(estimated_seconds, heavy)``, one after the other
    with the pause between them, each inside the request's ``window`` (a ``model.Window``; None:
    any time) and, with a ``snapshot``, where the forecast says it fits the queue as it is now.
    """
    from .windows import closes_at, next_open

    out: list[BatchStart] = []
    t: datetime | None = now
    for i, (est, heavy) in enumerate(batches, start=1):
        if t is None:
            out.append(BatchStart(i, None, None, "after an earlier batch that has no expected start"))
            continue
        duration = batch_duration(est, settings)
        scopes = _scopes(snapshot, Ask(est, heavy), settings, now) if snapshot is not None else []
        placed: tuple[datetime, str] | None = None
        at: datetime | None = t
        for _ in range(max_windows):
            if at is None:
                break
            if window is not None:
                at = next_open(window, at)
                if at is None:
                    break
            end = closes_at(window, at) if window is not None else None
            fit = earliest_fit(scopes, after=at, duration=duration, latest_end=end)
            if fit is not None:
                placed = (fit[0], f"after {fit[1].label} ends" if fit[1] is not None else "")
                break
            at = end  # try the next opening of the window
        if placed is None:
            out.append(BatchStart(i, None, None, f"does not fit within {max_windows} window openings"))
            t = None
            continue
        start, why = placed
        seconds = est if est > 0 else settings.forecast.default_run_minutes * 60
        out.append(BatchStart(i, start, start + timedelta(seconds=seconds), why))
        t = start + timedelta(seconds=seconds + pause_seconds)
    return tuple(out)


def describe_starts(starts: Sequence[BatchStart], timezone: str | None, now: datetime) -> list[str]:
    """One line per batch: its expected start and end in the request's zone and UTC."""
    t = _Times(timezone, now)
    lines = []
    for s in starts:
        if s.start is None or s.end is None:
            lines.append(f"batch {s.index}: no expected start ({s.note})")
            continue
        why = f", {s.note}" if s.note else ""
        lines.append(f"batch {s.index}: expected start {t.fmt(s.start)}, end {t.fmt(s.end)}{why}")
    return lines
