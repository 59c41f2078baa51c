"""The flow's dbt mitigations build exactly what plain dbt builds (real dbt-duckdb, the example).

A batch with a gap (stg_orders and mart_revenue, not int_orders between them) makes dbt cut
a subset graph whose edge stg_orders -> mart_revenue runs through a node left out: the lean
hooks (adapters/dbt_lean) and ``--cache-selected-only`` must give the same nodes, the same
statuses and the same order as dbt's own path. The batch's catalog holds the batch: dbt's own
``docs generate --select ... --no-compile`` would list every model of the warehouse.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from support.example import ExampleBuild

from rescue_runner.adapters import dbt_lean
from rescue_runner.dbt_args import dbt_build_args, dbt_docs_args, dbt_parse_args
from rescue_runner.flows.batch import fast_cycle_check

pytestmark = pytest.mark.slow


BATCH = ["stg_orders", "mart_revenue"]


def _build(manifest: Any, common: dict[str, Any], target: Path, lean: bool) -> list[tuple[str, str]]:
    from dbt.cli.main import dbtRunner

    args = dbt_build_args(select=BATCH, target_path=str(target), write_json=False,
                          cache_selected_only=lean, **common)
    with fast_cycle_check(), dbt_lean.lean_invocations() if lean else contextlib.nullcontext():
        res = dbtRunner(manifest=manifest).invoke([*args, "--quiet", "--threads", "1"])
        assert res.success, res.exception
        docs = dbtRunner(manifest=manifest).invoke(
            [*dbt_docs_args(select=BATCH, target_path=str(target), **common), "--quiet"])
        assert docs.success, docs.exception
    return [(r.node.unique_id, str(r.status)) for r in res.result.results]


def _catalog(target: Path) -> set[str]:
    return set(json.loads((target / "catalog.json").read_text())["nodes"])


def test_lean_build_is_plain_dbt(example_copy: ExampleBuild, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt.cli.main import dbtRunner

    for k, v in example_copy.env.items():
        monkeypatch.setenv(k, v)
    common = dict(project_dir=str(example_copy.project_dir), profiles_dir=str(example_copy.profiles_dir),
                  target="dev", log_path=str(tmp_path / "logs"))
    parsed = dbtRunner().invoke([*dbt_parse_args(**common), "--quiet"])
    assert parsed.success
    plain = _build(parsed.result, common, tmp_path / "plain", lean=False)
    lean = _build(parsed.result, common, tmp_path / "lean", lean=True)
    assert lean == plain
    built = [uid for uid, _ in plain]
    assert {"model.lakehouse.stg_orders", "model.lakehouse.mart_revenue"} <= set(built)
    assert "model.lakehouse.int_orders" not in built
    # mart_revenue waited for stg_orders (an edge through int_orders, which was left out)
    assert built.index("model.lakehouse.stg_orders") < built.index("model.lakehouse.mart_revenue")
    assert any(uid.startswith("test.") for uid in built)  # the models' tests ran too
    assert (tmp_path / "plain" / "graph_summary.json").read_text() != "{}"
    assert '"linked": {}' in (tmp_path / "lean" / "graph_summary.json").read_text()
    batch = {"model.lakehouse.stg_orders", "model.lakehouse.mart_revenue"}
    assert _catalog(tmp_path / "lean") == batch
    assert _catalog(tmp_path / "plain") > batch | {"model.lakehouse.int_orders"}  # dbt's own: everything

    # The flow selects by path (execution.batch_selectors), in a process whose working directory
    # is not the project (a worker): the docs step must resolve paths against the project root,
    # as dbt's build does.
    monkeypatch.chdir(tmp_path)
    by_path = ["path:models/staging/stg_orders.sql,package:lakehouse",
               "path:models/marts/mart_revenue.sql,package:lakehouse"]
    with dbt_lean.lean_invocations():
        docs = dbtRunner(manifest=parsed.result).invoke(
            [*dbt_docs_args(select=by_path, target_path=str(tmp_path / "by-path"), **common), "--quiet"])
    assert docs.success, docs.exception
    assert _catalog(tmp_path / "by-path") == batch
