"""Building requests: valid and invalid request corpora, ids, strict dates, selectors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from rescue_runner.loader import load_text
from rescue_runner.model import BatchSpec, DailyWindow, EventTime, Override, Request, Window
from rescue_runner.request import build_request, check_unique_ids, load_request

DATA = Path(__file__).resolve().parents[1] / "data" / "requests"
VALID = sorted((DATA / "valid").glob("*.yaml"))
INVALID = sorted((DATA / "invalid").glob("*.yaml"))
HEAD = 'version: 1\nreason: Rebuild the order marts after the outage.\nrequested_by: "@jane"\n'

EXPECTED: dict[str, dict[str, object]] = {
    "minimal": {
        "reason": "Orders were loaded twice after the source outage on 1 March.",
        "requested_by": "@jane.doe",
        "select": ("fct_orders+",),
    },
    "crlf-bom": {
        "reason": "Written on Windows with CRLF line endings and a BOM.",
        "requested_by": "@win",
        "select": ("stg_payments",),
    },
    "daily-window": {
        "reason": "Rebuild the customer marts overnight, outside business hours.",
        "requested_by": "jane.doe@example.com",
        "ticket": "DATA-1234",
        "select": ("dim_customers", "fct_customer_orders"),
        "exclude": ("tag:heavy",),
        "full_refresh": True,
        "window": Window(
            not_before=datetime(2026, 3, 1, 21, 0, tzinfo=UTC),
            not_after=datetime(2026, 3, 8, 6, 0, tzinfo=UTC),
            daily=DailyWindow(start=time(22, 0), end=time(6, 0)),
            timezone="Europe/Berlin",
        ),
        "batches": BatchSpec(max_models=50, max_minutes=30.0, pause_minutes=5.0),
        "priority": 10,
        "expires": datetime(2026, 4, 1, tzinfo=UTC),  # a date expires at the end of that day, UTC
    },
    "event-time": {
        "reason": "Late-arriving events for February must be reloaded batch by batch.",
        "requested_by": "@platform-oncall",
        "select": ("events_microbatch",),
        "event_time": EventTime(
            start=datetime(2026, 2, 1, tzinfo=UTC), end=datetime(2026, 2, 28, 23, tzinfo=UTC)
        ),
        "expires": datetime(2026, 3, 10, 16, 0, tzinfo=UTC),
    },
    "overrides": {
        "reason": "Month-end close needs the finance marts rebuilt during the day.",
        "requested_by": "Jane Doe",
        "ticket": "https://github.com/acme/analytics/issues/42",
        "select": ("tag:finance", "+fct_revenue", "config.materialized:incremental,tag:finance"),
        "overrides": (
            Override(
                "RR301",
                "@data-platform-lead",
                "Agreed with finance; the window must include the month-end close.",
            ),
            Override("RR205", "@finance-owner", "The downstream dashboards are paused for the day."),
        ),
        "priority": -5,
    },
}


def test_every_valid_file_has_an_expectation() -> None:
    assert {p.stem for p in VALID} == set(EXPECTED)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_request(path: Path) -> None:
    display = f"rescues/{path.name}"
    request, findings = load_request(path, display)
    assert findings == []
    assert request is not None
    expected = Request(
        id=path.stem,
        path=display,
        version=1,
        content_hash=request.content_hash,
        **EXPECTED[path.stem],  # type: ignore[arg-type]
    )
    assert request == expected
    assert request.content_hash.startswith("sha256:") and len(request.content_hash) == 71
    assert request.line_of("version") == (2 if path.stem == "daily-window" else 1)
    assert all(t.tzinfo is UTC for t in _datetimes(request))


def _datetimes(request: Request) -> list[datetime]:
    found = [request.expires]
    if request.window:
        found += [request.window.not_before, request.window.not_after]
    if request.event_time:
        found += [request.event_time.start, request.event_time.end]
    return [t for t in found if t is not None]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_request(path: Path) -> None:
    header = path.read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# expect: (RR\d{3}) line (\d+)", header)
    assert match, f"{path.name} must start with '# expect: RRnnn line N'"
    code, line = match.group(1), int(match.group(2))
    request, findings = load_request(path, path.name)
    assert request is None
    assert any(f.code == code and f.line == line for f in findings), [
        (f.code, f.line, f.message) for f in findings
    ]


def build(text: str, path: str = "rescues/r.yaml") -> tuple[Request | None, list[tuple[str, int | None]]]:
    doc, findings = load_text(text, path)
    assert doc is not None, findings
    request, findings = build_request(doc)
    return request, [(f.code, f.line) for f in findings]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("2026-03-01-orders", True),
        ("orders_v1.2", True),
        ("x" * 80, True),
        ("x" * 81, False),
        ("My Rescue", False),
        ("Orders", False),
        ("-orders", False),
        (".hidden", False),
        ("_x", False),
        ("orders!", False),
        ("ördersätze", False),
    ],
)
def test_request_id_is_a_slug_of_the_file_name(name: str, ok: bool) -> None:
    request, found = build(HEAD + "select: a\n", f"rescues/{name}.yaml")
    if ok:
        assert request is not None and request.id == name and found == []
    else:
        assert request is None and found == [("RR011", 1)]


def test_rr011_suggests_a_name() -> None:
    doc, _ = load_text(HEAD + "select: a\n", "rescues/My Rescue.yaml")
    assert doc is not None
    _, findings = build_request(doc)
    assert "e.g. to 'my-rescue.yaml'" in findings[0].message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("orders", ("orders",)),
        ("'a b'", ("a", "b")),
        ("'  a   b\tc  '", ("a", "b", "c")),
        ("[a, b, a]", ("a", "b")),
        ("['tag:x,tag:y', '+m', '2+n+3', '@o']", ("tag:x,tag:y", "+m", "2+n+3", "@o")),
    ],
)
def test_selectors_are_normalized_like_dbt_splits_them(value: str, expected: tuple[str, ...]) -> None:
    request, _ = build(HEAD + f"select: {value}\nexclude: {value}\n")
    assert request is not None and request.select == expected and request.exclude == expected


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("expires", "2026-03-31", datetime(2026, 4, 1, tzinfo=UTC)),
        ("expires", "2026-12-31", datetime(2027, 1, 1, tzinfo=UTC)),
        ("expires", "2026-03-31T18:00:00+02:00", datetime(2026, 3, 31, 16, tzinfo=UTC)),
        ("expires", "2026-03-31T18:00:00.250Z", datetime(2026, 3, 31, 18, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_expires(field: str, value: str, expected: datetime) -> None:
    request, found = build(HEAD + f"select: a\n{field}: {value}\n")
    assert found == [] and request is not None and request.expires == expected


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("expires: 2026-02-29\n", 5),
        ("expires: 2026-04-31T00:00:00Z\n", 5),
        ("event_time:\n  start: 2026-02-28\n  end: 2026-02-30\n", 7),
        ("window:\n  not_after: 2026-06-31T00:00:00+02:00\n", 6),
    ],
)
def test_impossible_dates_are_rr012_with_the_line(text: str, line: int) -> None:
    request, found = build(HEAD + "select: a\n" + text)
    assert request is None and found == [("RR012", line)]


def test_build_request_is_strict_even_without_the_schema() -> None:
    # The schema rejects naive date-times; build_request does too if called on its own.
    request, found = build(HEAD + "select: a\nwindow:\n  not_before: 2026-03-01T22:00:00\n")
    assert request is None and found == [("RR012", 6)]


def test_version_and_priority_written_as_floats_become_ints() -> None:
    request, found = build(
        "version: 1.0\nreason: Rebuild the order marts.\nrequested_by: me\nselect: a\npriority: 2.0\n"
    )
    assert found == [] and request is not None
    assert (type(request.version), type(request.priority)) == (int, int)


def test_check_unique_ids() -> None:
    def req(path: str) -> Request:
        request, _ = build(HEAD + "select: a\n", path)
        assert request is not None
        return request

    requests = [req("rescues/a.yaml"), req("rescues/team/a.yaml"), req("rescues/b.yaml")]
    findings = check_unique_ids(requests)
    assert [(f.code, f.path, f.line) for f in findings] == [
        ("RR013", "rescues/a.yaml", 1),
        ("RR013", "rescues/team/a.yaml", 1),
    ]
    assert "rescues/team/a.yaml" in findings[0].message
    assert check_unique_ids(requests[:1] + requests[2:]) == []


def test_load_request_stops_at_the_first_failing_step(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + "select: a\nselect: b\n", encoding="utf-8")
    request, findings = load_request(path, "r.yaml")
    assert request is None and [f.code for f in findings] == ["RR005"]
    path.write_text(HEAD + "select: a\nfull_refresh: no\n", encoding="utf-8")
    request, findings = load_request(path)
    assert request is None and [f.code for f in findings] == ["RR010"] and findings[0].path == path.as_posix()
