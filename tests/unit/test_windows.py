"""windows: DST days in Europe/Berlin with an injected clock, and window membership against a
brute-force minute scan in UTC (Hypothesis)."""

from __future__ import annotations

import functools
from bisect import bisect_left
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rescue_runner.model import DailyWindow, Window
from rescue_runner.windows import (
    DailySpec,
    QuietWindows,
    UnknownTimezone,
    boundary_kind,
    boundary_problems,
    intervals,
    is_open,
    is_valid_timezone,
    local_boundary,
    next_open,
    zone,
)

BERLIN = "Europe/Berlin"
MIN = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def duration_on(spec: DailySpec, day: date) -> timedelta:
    """Total open time of the occurrence that starts on local ``day``."""
    a = local_boundary(day, spec.start, zone(spec.timezone))
    found = intervals(spec, a, a + timedelta(hours=26))
    return found[0][1] - found[0][0] if found and found[0][0] == a else timedelta()


# ---- the two DST days of FACTS.md ----------------------------------------------------------

def test_spring_forward_berlin_0130_0230_lasts_30_minutes() -> None:
    spec = DailySpec(time(1, 30), time(2, 30), BERLIN)
    # 01:30 CET = 00:30 UTC; 02:30 never shows: the boundary is the jump, 03:00 CEST = 01:00 UTC.
    assert intervals(spec, utc(2025, 3, 29, 12), utc(2025, 3, 30, 12)) == [(utc(2025, 3, 30, 0, 30),
                                                                            utc(2025, 3, 30, 1, 0))]
    assert duration_on(spec, date(2025, 3, 30)) == timedelta(minutes=30)
    assert duration_on(spec, date(2025, 3, 29)) == timedelta(hours=1)
    now = utc(2025, 3, 30, 0, 59)  # injected clock
    assert is_open(spec, now)
    assert not is_open(spec, now + MIN)
    assert not is_open(spec, utc(2025, 3, 30, 0, 29))
    assert next_open(spec, utc(2025, 3, 29, 23, 0)) == utc(2025, 3, 30, 0, 30)
    assert next_open(spec, utc(2025, 3, 30, 1, 0)) == utc(2025, 3, 30, 23, 30)  # next day, CEST


def test_fall_back_berlin_0130_0230_uses_first_occurrence_and_lasts_1_hour() -> None:
    spec = DailySpec(time(1, 30), time(2, 30), BERLIN)
    # 01:30 CEST = 23:30 UTC the day before; 02:30 first occurs in CEST = 00:30 UTC.
    assert intervals(spec, utc(2025, 10, 25, 12), utc(2025, 10, 26, 12)) == [(utc(2025, 10, 25, 23, 30),
                                                                              utc(2025, 10, 26, 0, 30))]
    assert duration_on(spec, date(2025, 10, 26)) == timedelta(hours=1)
    assert not is_open(spec, utc(2025, 10, 26, 1, 0))  # 02:00 CET, the repeated hour: already closed
    assert next_open(spec, utc(2025, 10, 26, 0, 30)) == utc(2025, 10, 27, 0, 30)  # 01:30 CET next day


def test_boundary_kinds_on_the_dst_days() -> None:
    tz = zone(BERLIN)
    assert boundary_kind(date(2025, 3, 30), time(2, 30), tz) == "gap"
    assert boundary_kind(date(2025, 3, 30), time(3, 0), tz) == "ok"
    assert boundary_kind(date(2025, 10, 26), time(2, 30), tz) == "fold"
    assert boundary_kind(date(2025, 10, 26), time(3, 0), tz) == "ok"
    assert local_boundary(date(2025, 3, 30), time(2, 0), tz) == utc(2025, 3, 30, 1, 0)
    assert local_boundary(date(2025, 10, 26), time(2, 0), tz) == utc(2025, 10, 26, 0, 0)


def test_boundary_problems_over_2025() -> None:
    found = boundary_problems(time(22, 0), time(2, 30), BERLIN, date(2025, 1, 1), date(2025, 12, 31))
    assert [(p.day, p.which, p.kind) for p in found] == [(date(2025, 3, 30), "end", "gap"),
                                                          (date(2025, 10, 26), "end", "fold")]
    assert boundary_problems(time(22, 0), time(6, 0), BERLIN, date(2025, 1, 1), date(2025, 12, 31)) == []


def test_overnight_window_on_the_dst_nights() -> None:
    spec = DailySpec(time(22, 0), time(6, 0), BERLIN)
    assert duration_on(spec, date(2025, 3, 29)) == timedelta(hours=7)
    assert duration_on(spec, date(2025, 10, 25)) == timedelta(hours=9)
    assert duration_on(spec, date(2025, 6, 1)) == timedelta(hours=8)


# ---- request windows, quiet windows, zones ------------------------------------------------

def test_request_window_intersects_daily_with_absolute_bounds() -> None:
    w = Window(not_before=utc(2026, 3, 2, 0), not_after=utc(2026, 3, 3, 3),
               daily=DailyWindow(time(22), time(6)), timezone=BERLIN)
    assert intervals(w, utc(2026, 3, 1), utc(2026, 3, 5)) == [
        (utc(2026, 3, 2, 0), utc(2026, 3, 2, 5)),
        (utc(2026, 3, 2, 21), utc(2026, 3, 3, 3)),
    ]
    assert next_open(w, utc(2026, 3, 3, 3)) is None
    assert next_open(Window(not_after=utc(2026, 1, 1)), utc(2026, 2, 1)) is None
    assert next_open(Window(not_before=utc(2026, 1, 1)), utc(2025, 2, 1)) == utc(2026, 1, 1)


def test_quiet_windows_deny_beats_allow_and_weekdays_filter() -> None:
    nightly = DailySpec(time(22), time(6), BERLIN)
    weekend_day = DailySpec(time(0), time(0), BERLIN, weekdays=frozenset({5, 6}))  # whole Sat and Sun
    month_end = DailySpec(time(23), time(1), "UTC", name="close")
    q = QuietWindows(allow=(nightly, weekend_day), deny=(month_end,))
    assert is_open(q, utc(2026, 11, 24, 21, 30))   # Tue 22:30 Berlin
    assert not is_open(q, utc(2026, 11, 24, 23, 30))  # denied 23:00-01:00 UTC
    assert not is_open(q, utc(2026, 11, 24, 12))   # Tue noon
    assert is_open(q, utc(2026, 11, 28, 12))       # Sat noon
    assert is_open(QuietWindows(), utc(2026, 11, 24, 12))  # no windows: unrestricted
    assert not is_open(QuietWindows(deny=(nightly,)), utc(2026, 11, 24, 22))


@pytest.mark.parametrize("name", ["Europe/Berln", "europe/berlin", "CET+1", "localtime", "Europe",
                                  "../etc/passwd", "/etc/localtime", ""])
def test_unknown_zones_are_refused_never_utc(name: str) -> None:
    assert not is_valid_timezone(name)
    with pytest.raises(UnknownTimezone):
        zone(name)
    with pytest.raises(UnknownTimezone):
        is_open(DailySpec(time(1), time(2), name), utc(2026, 1, 1))


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(DailySpec(time(1), time(2), "UTC"), datetime(2026, 1, 1))


# ---- property: membership equals a brute-force minute scan in UTC --------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns",
         "Asia/Kolkata", "UTC", "America/Santiago", "Europe/London", "Asia/Tehran"]


@functools.cache
def transitions(name: str) -> tuple[datetime, ...]:
    """UTC instants in 2024-2026 at which ``name`` changes its offset (to the minute)."""
    tz = ZoneInfo(name)
    found = []
    t, stop = utc(2024, 1, 1), utc(2027, 1, 1)
    while t < stop:
        nxt = t + timedelta(hours=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt
            while hi - lo > MIN:
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid if mid > lo else lo + MIN
                else:
                    hi = mid
            found.append(hi)
        t = nxt
    return tuple(found)


@st.composite
def cases(draw: st.DrawFn) -> tuple[DailySpec, datetime]:
    """A daily window and a scan start; boundaries are mostly drawn near a real clock change of
    the zone (inside gaps and folds), where the definitions could disagree."""
    name = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(name)
    changes = transitions(name)
    if changes and draw(st.integers(0, 4)) > 0:
        pivot = draw(st.sampled_from(changes))
        wall = pivot.astimezone(tz)

        def near() -> time:
            return (wall + draw(st.integers(-90, 90)) * MIN).time().replace(second=0, microsecond=0)

        start = near() if draw(st.booleans()) else draw(clocks)
        end = near() if draw(st.booleans()) else draw(clocks)
    else:
        pivot = datetime.combine(draw(st.dates(date(2024, 1, 1), date(2026, 12, 31))), time(0), tzinfo=UTC)
        start, end = draw(clocks), draw(clocks)
    weekdays = draw(st.none() | st.frozensets(st.integers(0, 6), min_size=1))
    a = pivot.replace(second=0, microsecond=0) - draw(st.integers(0, 40 * 60)) * MIN
    return DailySpec(start, end, name, weekdays), a


clocks = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 29, 30, 45, 59]))


def scan(spec: DailySpec, a: datetime, b: datetime) -> set[datetime]:
    """Open minutes in [a, b) computed only from UTC minutes and their local wall clock:
    a boundary is the first scanned minute whose wall clock reaches the boundary time."""
    tz = ZoneInfo(spec.timezone)
    lo, hi = a - timedelta(days=3), b + timedelta(days=3)
    minutes = [lo + k * MIN for k in range(int((hi - lo) / MIN))]
    reached = list(accumulate((m.astimezone(tz).replace(tzinfo=None) for m in minutes), max))

    def first_reach(wall: datetime) -> datetime:
        return minutes[bisect_left(reached, wall)]

    crosses = spec.end <= spec.start
    spans = []
    day = a.astimezone(tz).date() - timedelta(days=2)
    while day <= b.astimezone(tz).date() + timedelta(days=1):
        if spec.weekdays is None or day.weekday() in spec.weekdays:
            s = first_reach(datetime.combine(day, spec.start))
            e = first_reach(datetime.combine(day + timedelta(days=1) if crosses else day, spec.end))
            spans.append((s, e))
        day += timedelta(days=1)
    return {m for m in minutes if a <= m < b and any(s <= m < e for s, e in spans)}


@settings(max_examples=150, deadline=None)
@given(case=cases(), data=st.data())
def test_membership_equals_minute_scan(case: tuple[DailySpec, datetime], data: st.DataObject) -> None:
    spec, a = case
    b = a + timedelta(hours=48)
    expected = scan(spec, a, b)
    found = intervals(spec, a, b)
    got = {m for k in range(48 * 60) if any(s <= (m := a + k * MIN) < e for s, e in found)}
    assert got == expected
    for k in data.draw(st.lists(st.integers(0, 48 * 60 - 1), max_size=8)):
        assert is_open(spec, a + k * MIN) == (a + k * MIN in expected)
    first = next_open(spec, a)
    if expected:
        assert first == min(expected)
    else:
        assert first is None or first >= b


# ---- times for people and expected batch starts ----------------------------------------------

def test_show_time_in_the_request_zone_with_utc_beside() -> None:
    from rescue_runner.windows import show_time

    at = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    assert show_time(at, "Europe/Berlin") == "2026-12-02 01:00 Europe/Berlin (00:00 UTC)"
    assert show_time(at, "America/New_York") == "2026-12-01 19:00 America/New_York (2026-12-02 00:00 UTC)"
    assert show_time(at, None) == show_time(at, "UTC") == show_time(at, "Mars/Base") == "2026-12-02 00:00 UTC"
    assert show_time(at.replace(second=7), "Europe/Berlin", seconds=True) == \
        "2026-12-02 01:00:07 Europe/Berlin (00:00:07 UTC)"


def test_display_zone_request_then_policy() -> None:
    from rescue_runner.windows import DailySpec, QuietWindows, display_zone

    quiet = QuietWindows(allow=(DailySpec(time(22, 0), time(6, 0), "Europe/Berlin"),))
    assert display_zone(Window(daily=DailyWindow(time(1, 0), time(5, 0)), timezone="Asia/Tokyo"), quiet) \
        == "Asia/Tokyo"
    assert display_zone(None, quiet) == display_zone(Window(), quiet) == "Europe/Berlin"
    assert display_zone(None, QuietWindows()) is None
