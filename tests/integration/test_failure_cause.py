"""Failures say why, on real parts (session Prefect server and worker, DuckDB): a data test fails
after its model was rebuilt, so dbt skips everything downstream. Status, log and the alert carry
dbt's message, the flow run link and the rebuilt/skipped split the warehouse was left in."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from support.example import ExampleBuild, copy_example
from support.prefect_server import PrefectServer, PrefectWorker
from support.rescue_repo import config, make_repo
from support.webhook import serve_hook

from rescue_runner import audit, execution
from rescue_runner.adapters import prefect_api

pytestmark = pytest.mark.slow

RID = "2026-12-07-orders-with-orphans"


def test_a_failing_test_after_a_rebuilt_model_is_explained_everywhere(
        prefect_server: PrefectServer, prefect_worker: PrefectWorker, example_build: ExampleBuild,
        tmp_path: Path) -> None:
    lake = copy_example(example_build, tmp_path / "lake" / "example")
    con = duckdb.connect(str(lake.db_path))
    try:  # an order of a customer who does not exist: int_orders' relationships test fails
        con.execute("insert into raw_orders values (900002, 999999, DATE '2026-12-01', 'completed')")
    finally:
        con.close()
    cfg = config(storage=tmp_path / "runs", deployment="rescue_failure_cause")
    cfg["notifications"] = {"webhook_url_env": "RESCUE_TEST_WEBHOOK", "on": ["failed"], "retries": 0}
    request = {"version": 1, "reason": "int_orders lost refunds; rebuild it and its marts",
               "requested_by": "ana", "ticket": "DATA-3", "select": "int_orders+"}
    with serve_hook() as hook:
        repo = make_repo(tmp_path / "repo", lake.project_dir, cfg, requests=[(RID, request)],
                         env={**prefect_server.env, "RESCUE_TEST_WEBHOOK": hook.url})
        repo.deploy(prefect_server.api_url, lake.db_path)
        first = repo.rescue("apply")
        assert first.returncode == 0, first.stdout + first.stderr
        rec = audit.derive(RID, [e for e in repo.audit_events() if e.request_id == RID]).in_flight
        assert rec is not None and rec.flow_run_id
        run = prefect_api.wait_for_flow_run(prefect_server.api_url, rec.flow_run_id, timeout=240,
                                            poll_seconds=1.0)
        assert run.state_type == "FAILED", run.state_message

        second = repo.rescue("apply")
        assert second.returncode == 1, second.stdout + second.stderr
        state = audit.derive(RID, [e for e in repo.audit_events() if e.request_id == RID])
        assert state.outcome == audit.FAILED
        reason = state.reason or ""
        # dbt's own words about the first failing node, and what the warehouse holds now
        assert "relationships_int_orders_customer_id" in reason and "Got 1 result" in reason, reason
        # int_orders and the marts that do not wait for its test were rebuilt; the rest is old
        assert "model(s) rebuilt (int_orders, " in reason, reason
        assert "downstream node(s) skipped (int_customer_orders, " in reason, reason
        assert execution.ui_url(prefect_server.api_url, rec.flow_run_id) in reason
        finished = next(e for e in repo.audit_events() if e.type == audit.BATCH_FINISHED)
        assert finished.fields["rebuilt"][0] == "model.lakehouse.int_orders"
        assert "model.lakehouse.int_customer_orders" in finished.fields["skipped"]

        status = repo.rescue("status", RID).stdout
        log = repo.rescue("log", RID).stdout
        for text in (status, log):
            assert "Got 1 result" in text and "rebuilt (int_orders, " in text, text
        assert len(hook.received) == 1
        alert = hook.received[0]["text"]
        assert "failed" in alert and "Got 1 result" in alert and "rebuilt (int_orders, " in alert, alert
