"""dbt_args: argument lists only from typed, validated fields; never --vars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rescue_runner.dbt_args import (
    UnsafeDbtArgument,
    check_selector,
    dbt_build_args,
    dbt_docs_args,
    dbt_parse_args,
    parse_dbt_selects,
    parse_event_time,
)

BASE = dict(project_dir="/p", profiles_dir="/p", target="prod", target_path="/t", log_path="/l")
START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)


def test_build_args_full_shape() -> None:
    args = dbt_build_args(select=["path:models/a.sql,package:lh", "stg_b"], exclude=["tag:slow"], **BASE)
    assert args == [
        "build", "--project-dir", "/p", "--profiles-dir", "/p", "--target", "prod",
        "--target-path", "/t", "--log-path", "/l", "--no-use-colors",
        "--select", "path:models/a.sql,package:lh", "stg_b", "--exclude", "tag:slow",
        "--indirect-selection", "eager",
        "--warn-error-options", '{"error": ["NoNodesForSelectionCriteria"]}',
        "--use-fast-test-edges",
    ]


def test_build_args_flags() -> None:
    args = dbt_build_args(select=["a"], project_dir="/p", full_refresh=True, fast_test_edges=False)
    assert "--full-refresh" in args and "--use-fast-test-edges" not in args
    assert "--no-write-json" not in args
    assert dbt_build_args(select=["a"], project_dir="/p", write_json=False)[-1] == "--no-write-json"
    assert "--target" not in args and "--profiles-dir" not in args


def test_event_time_window_is_naive_utc() -> None:
    cet = timezone(timedelta(hours=1))
    args = dbt_build_args(select=["a"], project_dir="/p", event_time_start=START,
                          event_time_end=datetime(2026, 4, 1, 1, 0, tzinfo=cet))
    i = args.index("--event-time-start")
    assert args[i:i + 4] == ["--event-time-start", "2026-03-01T00:00:00",
                             "--event-time-end", "2026-04-01T00:00:00"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(event_time_start=START), "together"),
    (dict(event_time_start=END, event_time_end=START), "before"),
    (dict(event_time_start=START.replace(tzinfo=None), event_time_end=END), "timezone-aware"),
    (dict(event_time_start=START, event_time_end=END, full_refresh=True), "whole"),
    (dict(target="prod; rm"), "target"),
    (dict(target="-x"), "target"),
    (dict(profiles_dir="--vars"), "profiles-dir"),
])
def test_build_args_refusals(kwargs: dict, message: str) -> None:
    with pytest.raises(UnsafeDbtArgument, match=message):
        dbt_build_args(select=["a"], project_dir="/p", **kwargs)


def test_empty_selection_refused() -> None:
    with pytest.raises(UnsafeDbtArgument, match="empty selection"):
        dbt_build_args(select=[], project_dir="/p")


@pytest.mark.parametrize("token", [
    "int_orders", "+mart_revenue", "mart_revenue+2", "@stg_orders", "tag:finance,config.materialized:table",
    "path:models/marts", "path:models/intermediate/int_orders.sql,package:lakehouse", "lakehouse.marts.*",
    "config.meta.rescue.heavy:true", "source:raw.orders+", "state:modified+", "result:error+",
    "test_type:generic", "int_orders.v2",
])
def test_safe_selectors_pass(token: str) -> None:
    assert check_selector(token) == token


@pytest.mark.parametrize("token, message", [
    ("--vars", "starts with '-'"),
    ("-s", "starts with '-'"),
    ("a b", "allowlist"),
    ("{{ env_var('X') }}", "allowlist"),
    ("a;rm", "allowlist"),
    ("tag:'x'", "allowlist"),
    ("a$b", "allowlist"),
    ("a\nb", "allowlist"),
    ("path:../../etc", "outside"),
    ("path:/etc/passwd", "outside"),
    ("+file:../x.sql", "outside"),
    ("", "empty"),
    ("x" * 600, "longer"),
])
def test_unsafe_selectors_refused(token: str, message: str) -> None:
    with pytest.raises(UnsafeDbtArgument, match=message):
        check_selector(token)
    with pytest.raises(UnsafeDbtArgument):
        dbt_build_args(select=["ok", token], project_dir="/p")


def test_parse_dbt_selects_synonyms_and_exclude() -> None:
    assert parse_dbt_selects({"run": "a b", "build": "b c", "exclude": "d"}) == (("a", "b", "c"), ("d",))
    assert parse_dbt_selects({"select": "x"}) == (("x",), ())


@pytest.mark.parametrize("value, message", [
    ({"vars": "{x: 1}"}, "unknown key"),
    ({"run": "   "}, "empty selection"),
    ({"exclude": "a"}, "empty selection"),
    ({"run": "a --full-refresh"}, "starts with '-'"),
])
def test_parse_dbt_selects_refusals(value: dict, message: str) -> None:
    with pytest.raises(UnsafeDbtArgument, match=message):
        parse_dbt_selects(value)


def test_parse_event_time() -> None:
    assert parse_event_time(None) is None
    assert parse_event_time("2026-03-01") == START
    assert parse_event_time("2026-03-01T01:00:00+01:00") == START
    with pytest.raises(UnsafeDbtArgument):
        parse_event_time("yesterday")


def test_docs_and_parse_args() -> None:
    docs = dbt_docs_args(select=["a"], **BASE)
    assert docs[:2] == ["docs", "generate"] and docs[-2:] == ["--no-write-json", "--no-compile"]
    assert docs[docs.index("--select") + 1] == "a"
    parse = dbt_parse_args(project_dir="/p", profiles_dir="/p", target="prod")
    assert parse[0] == "parse" and "--no-write-json" in parse and "--select" not in parse


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=4),
       st.lists(st.text(min_size=1, max_size=40), max_size=2), st.booleans())
def test_never_vars_and_no_flag_injection(select: list[str], exclude: list[str], fr: bool) -> None:
    """Whatever the selectors, the result never carries --vars, and every selector that
    got through is a single allowlisted token, not a flag."""
    try:
        args = dbt_build_args(select=select, exclude=exclude, project_dir="/p", full_refresh=fr)
    except UnsafeDbtArgument:
        return
    assert "--vars" not in args
    i, j = args.index("--select"), args.index("--indirect-selection")
    for token in args[i + 1:j]:
        assert token == "--exclude" or (not token.startswith("-") and check_selector(token) == token)
