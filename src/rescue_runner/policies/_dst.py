"""Shared by RR304 and RR305: the DST problems of a request's daily window boundaries."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..windows import BoundaryProblem, UnknownTimezone, boundary_problems, zone
from .base import PolicyContext


def problems(ctx: PolicyContext) -> list[BoundaryProblem]:
    """Gap/fold problems of the request's daily window over its examined period (local dates)."""
    w = ctx.request.window
    period = ctx.window_period()
    if w is None or w.daily is None or not w.timezone or period is None:
        return []
    try:
        tz = zone(w.timezone)
    except UnknownTimezone:
        return []
    first = period[0].astimezone(tz).date() - timedelta(days=1)
    last = period[1].astimezone(tz).date()
    return boundary_problems(w.daily.start, w.daily.end, w.timezone, first, last)


def jump(p: BoundaryProblem, tz_name: str) -> tuple[str, str]:
    """Wall-clock times around the transition at ``p`` ("02:00", "03:00")."""
    tz = zone(tz_name)
    if p.kind == "gap":
        before = (p.at - timedelta(seconds=1)).astimezone(tz) + timedelta(seconds=1)
        return f"{before:%H:%M}", f"{p.at.astimezone(tz):%H:%M}"
    naive = datetime.combine(p.day, p.clock)
    return _offset(naive.replace(tzinfo=tz, fold=0)), _offset(naive.replace(tzinfo=tz, fold=1))


def _offset(t: datetime) -> str:
    return f"UTC{t:%z}"[:-2] + ":" + f"{t:%z}"[-2:]
