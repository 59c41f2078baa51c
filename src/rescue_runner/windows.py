"""Window maths: when a request window or the policy's quiet windows are open. Pure, no clock.

Every computation is done on UTC instants; local wall-clock times are only used to find
where a daily window starts and ends, through ``zoneinfo`` (IANA names, never a silent UTC
or machine-local fallback: an unknown name raises :class:`UnknownTimezone`).

The one definition everything here follows:

    A daily boundary ``HH:MM`` on local date D is the **first instant at which the local
    clock shows D HH:MM or later**.

What that means on the two days a year when clocks change (Europe/Berlin):

* repeated hour (fold, 2025-10-26, 03:00 CEST -> 02:00 CET): ``02:30`` is its *first*
  occurrence, 02:30 CEST = 00:30 UTC. A 01:30-02:30 window lasts 1 h that day.
* skipped hour (gap, 2025-03-30, 02:00 CET -> 03:00 CEST): ``02:30`` never shows, so the
  boundary is the jump itself, 03:00 CEST = 01:00 UTC. A 01:30-02:30 window lasts 30 min
  that day (only 01:30-02:00 CET exists).

Policy rule RR304 refuses request windows with a boundary in a gap; RR305 warns about a
boundary in a repeated hour. A daily window whose ``end`` is at or before its ``start``
crosses midnight (``start == end`` is a full day); its weekday filter applies to the date
the window starts on. Intervals are half-open, ``[start, end)``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .model import Window

Interval = tuple[datetime, datetime]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Keys present in tz databases that do not name a place: refusing them keeps a window from
# silently following the machine's own zone.
_NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})
DEFAULT_HORIZON = timedelta(days=400)


class UnknownTimezone(ValueError):
    """A time zone name that is not an IANA zone known to this machine's tz database."""


@dataclass(frozen=True)
class DailySpec:
    """A recurring daily window in local time of ``timezone`` (a policy quiet window).

    ``weekdays`` (0 = Monday) filters by the local date the window starts on; None = every day.
    """

    start: time
    end: time
    timezone: str
    weekdays: frozenset[int] | None = None
    name: str = ""

    def describe(self) -> str:
        days = "" if self.weekdays is None else " on " + ",".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        label = f"'{self.name}' " if self.name else ""
        return f"{label}{self.start:%H:%M}-{self.end:%H:%M} {self.timezone}{days}"


@dataclass(frozen=True)
class QuietWindows:
    """The policy's quiet time: inside some ``allow`` window and outside every ``deny`` window.

    No ``allow`` window means all time is allowed (minus ``deny``); deny beats allow.
    """

    allow: tuple[DailySpec, ...] = ()
    deny: tuple[DailySpec, ...] = ()

    @property
    def unrestricted(self) -> bool:
        return not self.allow and not self.deny


Spec = Window | DailySpec | QuietWindows


@functools.lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_PLACES


def is_valid_timezone(name: str) -> bool:
    """True for an IANA zone name of the tz database (case-sensitive; not 'localtime')."""
    return name in _known_zones()


def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; UnknownTimezone (never UTC) when it is not one."""
    if not is_valid_timezone(name):
        raise UnknownTimezone(f"unknown time zone '{name}'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise UnknownTimezone(f"unknown time zone '{name}'") from exc


def _aware(at: datetime, what: str = "instant") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC)


def _wall(u: datetime, tz: ZoneInfo) -> datetime:
    return u.astimezone(tz).replace(tzinfo=None)


def boundary_kind(day: date, clock: time, tz: ZoneInfo) -> Literal["ok", "gap", "fold"]:
    """Whether ``day clock`` exists once ("ok"), never ("gap") or twice ("fold") in ``tz``."""
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=tz, fold=0)
    if _wall(first.astimezone(UTC), tz) != naive:
        return "gap"
    second = naive.replace(tzinfo=tz, fold=1)
    return "fold" if second.utcoffset() != first.utcoffset() else "ok"


def local_boundary(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The first UTC instant at which the local clock shows ``day clock`` or later."""
    naive = datetime.combine(day, clock)
    a = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(a, tz) == naive:
        return a  # exists; fold=0 is the first occurrence of a repeated time
    # In a gap: both readings straddle the jump; bisect (whole seconds) for the jump itself.
    b = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(a, b), max(a, b)
    if _wall(lo, tz) >= naive:  # defensive: never expected for a real gap
        return lo
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), tz) >= naive:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals; touching ones are joined."""
    out: list[Interval] = []
    for s, e in sorted(i for i in intervals if i[1] > i[0]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def subtract(base: Sequence[Interval], cut: Sequence[Interval]) -> list[Interval]:
    """``base`` minus ``cut`` (both merged lists)."""
    out: list[Interval] = []
    for s, e in base:
        cur = s
        for cs, ce in cut:
            if ce <= cur or cs >= e:
                continue
            if cs > cur:
                out.append((cur, cs))
            cur = max(cur, ce)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """The intersection of two merged lists."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _daily(start_clock: time, end_clock: time, tz_name: str, weekdays: frozenset[int] | None,
           start: datetime, end: datetime) -> list[Interval]:
    tz = zone(tz_name)
    crosses = end_clock <= start_clock
    first_day = start.astimezone(tz).date() - timedelta(days=2)
    last_day = end.astimezone(tz).date() + timedelta(days=1)
    found: list[Interval] = []
    day = first_day
    while day <= last_day:
        if weekdays is None or day.weekday() in weekdays:
            s = local_boundary(day, start_clock, tz)
            e = local_boundary(day + timedelta(days=1) if crosses else day, end_clock, tz)
            if e > s and e > start and s < end:
                found.append((max(s, start), min(e, end)))
        day += timedelta(days=1)
    return merge(found)


def intervals(spec: Spec, start: datetime, end: datetime) -> list[Interval]:
    """The UTC intervals within ``[start, end)`` when ``spec`` is open, merged and sorted.

    Raises UnknownTimezone for an unknown zone and ValueError for naive datetimes.
    """
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        return []
    if isinstance(spec, DailySpec):
        return _daily(spec.start, spec.end, spec.timezone, spec.weekdays, start, end)
    if isinstance(spec, QuietWindows):
        allowed = merge(i for w in spec.allow for i in intervals(w, start, end)) if spec.allow \
            else [(start, end)]
        denied = merge(i for w in spec.deny for i in intervals(w, start, end))
        return subtract(allowed, denied)
    lo = max(start, _aware(spec.not_before)) if spec.not_before else start
    hi = min(end, _aware(spec.not_after)) if spec.not_after else end
    if hi <= lo:
        return []
    if spec.daily is None:
        return [(lo, hi)]
    if not spec.timezone:
        raise UnknownTimezone("a daily window needs a time zone")
    return _daily(spec.daily.start, spec.daily.end, spec.timezone, None, lo, hi)


def is_open(spec: Spec, at: datetime) -> bool:
    """Whether ``spec`` is open at the instant ``at`` (aware)."""
    at = _aware(at, "at")
    return bool(intervals(spec, at, at + timedelta(microseconds=1)))


def next_open(spec: Spec, after: datetime, *, horizon: timedelta = DEFAULT_HORIZON) -> datetime | None:
    """The first instant at or after ``after`` when ``spec`` is open (``after`` itself if open now),
    or None when it does not open within ``horizon``."""
    after = _aware(after, "after")
    found = intervals(spec, after, after + horizon)
    return found[0][0] if found else None


def closes_at(spec: Spec, at: datetime, *, horizon: timedelta = timedelta(days=2)) -> datetime | None:
    """When the open interval holding ``at`` ends; None when ``spec`` is closed at ``at`` or stays
    open for at least ``horizon``."""
    at = _aware(at, "at")
    found = intervals(spec, at, at + horizon)
    if not found or found[0][0] > at or found[0][1] >= at + horizon:
        return None
    return found[0][1]


def show_time(at: datetime, tz_name: str | None = None, *, seconds: bool = False) -> str:
    """An instant for people: local time in ``tz_name`` with UTC beside it.

    ``2026-12-02 01:00 Europe/Berlin (00:00 UTC)``; the UTC date is repeated when it differs
    from the local one; plain ``2026-12-02 00:00 UTC`` without a zone (or an unknown one).
    """
    u = _aware(at).replace(microsecond=0)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    if not tz_name or tz_name == "UTC" or not is_valid_timezone(tz_name):
        return u.strftime(f"%Y-%m-%d {clock}") + " UTC"
    local = u.astimezone(zone(tz_name))
    utc = u.strftime(clock if local.date() == u.date() else f"%Y-%m-%d {clock}")
    return local.strftime(f"%Y-%m-%d {clock}") + f" {tz_name} ({utc} UTC)"


def display_zone(window: Window | None, quiet: QuietWindows | None = None) -> str | None:
    """The zone times are shown in: the request window's, else the policy's (first quiet window)."""
    if window is not None and window.timezone and is_valid_timezone(window.timezone):
        return window.timezone
    for spec in (quiet.allow + quiet.deny) if quiet is not None else ():
        if is_valid_timezone(spec.timezone):
            return spec.timezone
    return None


@dataclass(frozen=True)
class Timeline:
    """When a plan's batches are expected to start (one per batch; None: the window never
    opens again) and the zone to show them in."""

    starts: tuple[datetime | None, ...]
    timezone: str | None = None

    def show(self, index: int) -> str:
        """The expected start of batch ``index`` (1-based) for people."""
        at = self.starts[index - 1] if 0 < index <= len(self.starts) else None
        if at is None:
            return "no expected start in the next window openings"
        return show_time(at, self.timezone)

    def to_dict(self) -> dict[str, object]:
        return {"timezone": self.timezone,
                "expected_starts": [a.astimezone(UTC).isoformat() if a else None for a in self.starts]}


@dataclass(frozen=True)
class BoundaryProblem:
    """A daily boundary that falls in a DST gap (never shown) or fold (shown twice) on ``day``."""

    day: date
    which: Literal["start", "end"]
    clock: time
    kind: Literal["gap", "fold"]
    at: datetime  # the UTC instant used for the boundary that day


def boundary_problems(start_clock: time, end_clock: time, tz_name: str,
                      first_day: date, last_day: date) -> list[BoundaryProblem]:
    """Every gap/fold hit by the start or end boundary of a daily window on the local dates
    ``first_day .. last_day`` (inclusive; an end crossing midnight is dated the next day)."""
    tz = zone(tz_name)
    crosses = end_clock <= start_clock
    out: list[BoundaryProblem] = []
    day = first_day
    while day <= last_day:
        ends: tuple[tuple[Literal["start", "end"], time, date], ...] = (
            ("start", start_clock, day),
            ("end", end_clock, day + timedelta(days=1) if crosses else day),
        )
        for which, clock, on in ends:
            kind = boundary_kind(on, clock, tz)
            if kind != "ok":
                out.append(BoundaryProblem(on, which, clock, kind, local_boundary(on, clock, tz)))
        day += timedelta(days=1)
    return out
