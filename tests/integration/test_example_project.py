"""The bundled example project builds with real dbt + DuckDB and has the shape rescue tests rely on."""

from __future__ import annotations

import json
from collections.abc import Iterable

import duckdb
import pytest
from support.example import ExampleBuild, run_dbt

pytestmark = pytest.mark.slow

MODELS = {
    "stg_customers": "view",
    "stg_orders": "view",
    "stg_payments": "view",
    "stg_events": "view",
    "int_orders": "table",
    "int_customer_orders": "table",
    "int_events_daily": "incremental",
    "mart_revenue": "incremental",
    "mart_customer_ltv": "incremental",
    "mart_customers": "table",
    "mart_finance_summary": "table",
    "mart_payment_methods": "table",
    "mart_events_monthly": "table",
    "mart_customer_engagement": "table",
}
MICROBATCH_MODEL = "int_events_daily"


def _model_id(name: str) -> str:
    return f"model.lakehouse.{name}"


def _descendants(child_map: dict[str, list[str]], roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(child_map.get(node, []))
    return seen


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_warehouse_has_the_built_relations(example_build: ExampleBuild) -> None:
    with duckdb.connect(str(example_build.db_path), read_only=True) as con:
        kinds = dict(
            con.execute(
                "select table_name, table_type from information_schema.tables where table_schema = 'main'"
            ).fetchall()
        )
        for name, materialized in MODELS.items():
            assert kinds.get(name) == ("VIEW" if materialized == "view" else "BASE TABLE"), name
        for seed in ("raw_customers", "raw_orders", "raw_payments", "raw_events"):
            assert kinds.get(seed) == "BASE TABLE", seed

        orders = _scalar(con, "select count(*) from raw_orders")
        assert 100 <= orders <= 500
        assert _scalar(con, "select count(*) from int_orders") == orders

        # One row per order day; revenue adds up to the raw payments.
        revenue_days = _scalar(con, "select count(*) from mart_revenue")
        assert revenue_days == _scalar(con, "select count(distinct order_date) from raw_orders")
        assert 50 <= revenue_days <= 304
        assert _scalar(con, "select sum(gross_revenue) from mart_revenue") == pytest.approx(
            _scalar(con, "select sum(amount_cents) / 100.0 from raw_payments")
        )

        # The microbatch model covers every event, January to October 2026.
        events = _scalar(con, "select count(*) from raw_events")
        assert 100 <= events <= 1000
        assert _scalar(con, f"select sum(event_count) from {MICROBATCH_MODEL}") == events
        assert 50 <= _scalar(con, f"select count(*) from {MICROBATCH_MODEL}") <= events
        months = con.execute(
            f"select distinct strftime(event_at, '%Y-%m') from {MICROBATCH_MODEL} order by 1"
        ).fetchall()
        assert [m for (m,) in months] == [f"2026-{n:02d}" for n in range(1, 11)]

        assert _scalar(con, "select count(*) from mart_customers") == _scalar(
            con, "select count(*) from raw_customers"
        )


def test_manifest_describes_the_rescue_relevant_configs(example_build: ExampleBuild) -> None:
    manifest = example_build.manifest()
    nodes = manifest["nodes"]
    models = {n["name"]: n for n in nodes.values() if n["resource_type"] == "model"}
    assert {name: m["config"]["materialized"] for name, m in models.items()} == MODELS

    micro = models[MICROBATCH_MODEL]["config"]
    assert micro["incremental_strategy"] == "microbatch"
    assert micro["event_time"] == "event_at"
    assert micro["batch_size"] == "month"
    assert str(micro["begin"]).startswith("2026-01-01")
    assert models["stg_events"]["config"]["event_time"] == "event_at"

    assert models["mart_customer_ltv"]["config"]["full_refresh"] is False
    assert models["mart_revenue"]["config"]["full_refresh"] is None
    assert models["mart_revenue"]["config"]["incremental_strategy"] == "delete+insert"
    assert models["mart_revenue"]["config"]["meta"]["rescue"]["heavy"] is True
    assert models["mart_revenue"]["meta"]["rescue"]["heavy"] is True
    assert {"finance", "daily"} <= set(models["mart_revenue"]["tags"])

    # Lineage: marts on marts and on two intermediates, five levels below the seeds.
    parents = manifest["parent_map"]
    assert _model_id("mart_revenue") in parents[_model_id("mart_finance_summary")]
    assert _model_id("mart_customer_ltv") in parents[_model_id("mart_customers")]
    assert {_model_id("int_customer_orders"), _model_id("int_events_daily")} <= set(
        parents[_model_id("mart_customer_engagement")]
    )

    singular = nodes["test.lakehouse.assert_mart_revenue_not_negative"]
    assert singular["depends_on"]["nodes"] == [_model_id("mart_revenue")]


def test_run_results_report_success_for_every_node(example_build: ExampleBuild) -> None:
    manifest = example_build.manifest()
    results = example_build.run_results()["results"]
    statuses = {r["unique_id"]: r["status"] for r in results}
    expected = {
        uid for uid, n in manifest["nodes"].items() if n["resource_type"] in ("model", "seed", "test")
    }
    assert set(statuses) == expected
    bad = {uid: s for uid, s in statuses.items() if s not in ("success", "pass")}
    assert not bad
    assert sum(uid.startswith("test.") for uid in statuses) >= 30
    assert statuses[_model_id(MICROBATCH_MODEL)] == "success"


def test_rebuild_int_orders_downstream_on_a_copy(
    example_build: ExampleBuild, example_copy: ExampleBuild
) -> None:
    before = example_build.run_results_path.read_text()
    proc = run_dbt(example_copy, ["build", "--select", "int_orders+"])
    assert proc.returncode == 0

    manifest = example_copy.manifest()
    expected = _descendants(manifest["child_map"], [_model_id("int_orders")])
    results = example_copy.run_results()["results"]
    ran = {r["unique_id"] for r in results}
    assert ran == expected
    assert {r["status"] for r in results} <= {"success", "pass"}
    assert _model_id("mart_customers") in ran
    assert "test.lakehouse.assert_mart_revenue_not_negative" in ran
    assert not {uid for uid in ran if uid.startswith("seed.") or ".stg_" in uid}
    assert _model_id(MICROBATCH_MODEL) not in ran
    # The session build is untouched.
    assert example_build.run_results_path.read_text() == before
    assert json.loads(before)["results"]


def test_microbatch_window_reloads_only_that_batch(example_copy: ExampleBuild) -> None:
    monthly = (
        f"select strftime(event_at, '%Y-%m'), sum(event_count) from {MICROBATCH_MODEL} group by 1 order by 1"
    )
    with duckdb.connect(str(example_copy.db_path)) as con:
        before = dict(con.execute(monthly).fetchall())
        con.execute(
            "insert into raw_events values "
            "(90001, 1, 'checkout', timestamp '2026-10-15 10:00:00'), "
            "(90002, 1, 'checkout', timestamp '2026-09-15 10:00:00')"
        )

    window = ["--event-time-start", "2026-10-01", "--event-time-end", "2026-11-01"]
    run_dbt(example_copy, ["run", "--select", MICROBATCH_MODEL, *window])

    with duckdb.connect(str(example_copy.db_path), read_only=True) as con:
        after = dict(con.execute(monthly).fetchall())
    assert after["2026-10"] == before["2026-10"] + 1
    assert after["2026-09"] == before["2026-09"]  # outside the window: not reloaded
    assert {m: n for m, n in after.items() if m != "2026-10"} == {
        m: n for m, n in before.items() if m != "2026-10"
    }
    (result,) = example_copy.run_results()["results"]
    assert result["status"] == "success"
    assert len(result["batch_results"]["successful"]) == 1
