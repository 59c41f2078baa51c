"""A second real warehouse: the bundled example on PostgreSQL (dbt-postgres) against the session's
server on 127.0.0.1. The project builds there, and two requests apply end to end through the real
Prefect server and worker with their batches running at the same time, without connection
retries (DuckDB's single writer needed them)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from support.example import EXAMPLE_SOURCE, dbt_env, dbt_executable
from support.postgres_server import PostgresServer
from support.prefect_server import TELEMETRY_OFF, PrefectServer, PrefectWorker
from support.rescue_repo import config, make_repo

from rescue_runner import execution
from rescue_runner.config import load_config

pytestmark = pytest.mark.slow

class PgLakehouse:
    def __init__(self, server: PostgresServer, dbname: str, project: Path) -> None:
        self.server, self.dbname, self.project = server, dbname, project
        self.env = server.env(dbname)

    def count(self, table: str) -> int:
        return int(self.server.psql(f"select count(*) from main.{table}", dbname=self.dbname))


@pytest.fixture(scope="module")
def pg_lakehouse(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> PgLakehouse:
    """examples/lakehouse seeded and built on PostgreSQL with `--target postgres`."""
    root = tmp_path_factory.mktemp("pg-lakehouse")
    project = root / "lakehouse"
    shutil.copytree(EXAMPLE_SOURCE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    dbname = postgres_server.create_database("lakehouse_e2e")
    lake = PgLakehouse(postgres_server, dbname, project)
    for step in (["seed"], ["build"]):
        proc = subprocess.run([*dbt_executable(), *step, "--target", "postgres", "--project-dir",
                               str(project), "--profiles-dir", str(project)], cwd=root, env=dbt_env(lake.env),
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return lake


def test_the_example_builds_on_postgres(pg_lakehouse: PgLakehouse) -> None:
    assert pg_lakehouse.count("int_orders") > 0
    assert pg_lakehouse.count("mart_revenue") > 0
    assert pg_lakehouse.count("int_events_daily") > 0  # microbatch on dbt-postgres too


REQUESTS = {  # two requests on disjoint models: their first batches may run side by side
    "2026-12-01-pg-orders": "int_orders int_customer_orders",
    "2026-12-01-pg-events": "mart_events_monthly",
}


def test_two_requests_apply_end_to_end_with_concurrent_batches(
        pg_lakehouse: PgLakehouse, prefect_server: PrefectServer, prefect_worker: PrefectWorker,
        tmp_path: Path) -> None:
    """`rescue apply` through the session's Prefect server and worker: both requests' batches run at
    the same time on one PostgreSQL database, each once (no retries), and repair what was lost."""
    tables = ("int_orders", "int_customer_orders", "mart_events_monthly")
    before = {t: pg_lakehouse.count(t) for t in tables}
    cfg = config(storage=tmp_path / "runs", deployment="rescue_pg")
    cfg["dbt"].update(target="postgres", adapter="postgres")
    repo = make_repo(tmp_path / "git", pg_lakehouse.project, cfg, env=prefect_server.env)
    execution.deploy(load_config(repo.runner / "rescue.yaml"), api_url=prefect_server.api_url,
                     job_variables={"env": {**pg_lakehouse.env, **TELEMETRY_OFF}})
    for t in tables:  # the damage the rescues repair
        pg_lakehouse.server.psql(f"truncate main.{t}", dbname=pg_lakehouse.dbname)
    for rid, select in REQUESTS.items():
        repo.merge_request(rid, {"version": 1, "reason": f"rebuild {select} on PostgreSQL",
                                 "requested_by": "ops", "select": select})

    done = repo.rescue("apply", "--wait", "--poll", "1", timeout=420)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for rid in REQUESTS:
        assert f"{rid}: succeeded: 1 batch(es) completed" in done.stdout, done.stdout
    assert {t: pg_lakehouse.count(t) for t in tables} == before

    names = [f"{rid}-batch-1" for rid in REQUESTS]
    runs = httpx.post(f"{prefect_server.api_url}/flow_runs/filter", timeout=10,
                      json={"flow_runs": {"name": {"any_": names}}}).json()
    assert sorted(r["name"] for r in runs) == sorted(names)
    assert all(r["state_type"] == "COMPLETED" and r["run_count"] == 1 for r in runs)  # no retries
    (s1, e1), (s2, e2) = [(datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"]))
                          for r in runs]
    assert s1 < e2 and s2 < e1, "the two requests' batches did not overlap in time"
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/summary.json")]
    assert [s["target"] for s in summaries] == ["postgres", "postgres"]
    assert all(s["status"] == "success" and not s["failed"] for s in summaries)
