"""Slot occupancy of a queue over time: pure interval maths, never reads the clock.

An ``Occupant`` holds ``weight`` slots over ``[start, end)`` (half-open, as in windows.py):
a running flow run until its expected end, a scheduled run from its expected start for its
deployment's typical duration, a slot promised to a waiting rescue. The load only rises at
an occupant's start and only falls at an end, so every question here (the peak over an
interval, the earliest start that fits, the longest gap) is answered on those instants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Occupant:
    """``weight`` slots held over ``[start, end)``; ``label`` names it in a decision."""

    label: str
    start: datetime
    end: datetime
    weight: int = 1
    kind: str = "scheduled"  # running | scheduled | reserved

    def active(self, at: datetime) -> bool:
        return self.start <= at < self.end


def load_at(occupants: Iterable[Occupant], at: datetime) -> int:
    """Slots held at instant ``at``."""
    return sum(o.weight for o in occupants if o.active(at))


def peak(occupants: Sequence[Occupant], start: datetime,
         end: datetime) -> tuple[int, datetime, tuple[Occupant, ...]]:
    """The highest load over ``[start, end)``: (slots, first instant it is reached, who holds them)."""
    instants = [start, *sorted(o.start for o in occupants if start < o.start < end)]
    best, at = -1, start
    for t in instants:
        load = load_at(occupants, t)
        if load > best:
            best, at = load, t
    return best, at, tuple(o for o in occupants if o.active(at))


@dataclass(frozen=True)
class Scope:
    """One concurrency limit: who counts against it and how many slots a batch may use."""

    name: str  # e.g. "queue dbt", "work pool rescue"
    occupants: tuple[Occupant, ...]
    capacity: int  # the limit minus the slots kept in reserve
    weight: int  # slots the batch takes
    limit: int
    reserve: int

    def overflow(self, start: datetime, end: datetime) -> tuple[int, datetime, tuple[Occupant, ...]] | None:
        """None when the batch fits over ``[start, end)``; else the peak that does not fit."""
        load, at, who = peak(self.occupants, start, end)
        return None if load + self.weight <= self.capacity else (load, at, who)


def earliest_fit(scopes: Sequence[Scope], *, after: datetime, duration: timedelta,
                 latest_end: datetime | None) -> tuple[datetime, Occupant | None] | None:
    """The first start ``t >= after`` where the batch fits every scope over ``[t, t + duration)``
    and ends by ``latest_end``; with the occupant whose end made room (None: room at ``after``).
    """
    ends = sorted({(o.end, o.label): o for s in scopes for o in s.occupants if o.end > after}.items())
    candidates: list[tuple[datetime, Occupant | None]] = [(after, None)] + [(end, o) for (end, _), o in ends]
    for t, freed_by in candidates:
        if latest_end is not None and t + duration > latest_end:
            return None
        if all(s.overflow(t, t + duration) is None for s in scopes):
            return t, freed_by
    return None


def longest_gap(scopes: Sequence[Scope], *, start: datetime,
                end: datetime) -> tuple[timedelta, datetime | None]:
    """The longest stretch inside ``[start, end)`` where the batch fits every scope, and its start."""
    instants = sorted({start, end, *(t for s in scopes for o in s.occupants for t in (o.start, o.end)
                                     if start < t < end)})
    best, best_at = timedelta(0), None
    run_start: datetime | None = None
    for t in instants:
        fits = t < end and all(load_at(s.occupants, t) + s.weight <= s.capacity for s in scopes)
        if fits and run_start is None:
            run_start = t
        elif not fits and run_start is not None:
            if t - run_start > best:
                best, best_at = t - run_start, run_start
            run_start = None
    return best, best_at
