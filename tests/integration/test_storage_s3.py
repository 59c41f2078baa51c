"""Storage by URL against a real S3-compatible server (moto) through s3fs.

A real flow run writes its artifacts into the bucket; a fresh checkout without any local
history validates and plans a request with estimates read from the bucket (and the heavy rule
fires from that history); unreachable storage is a one-line exit-2 error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import git
import pytest
from support.example import ExampleBuild, dbt_env
from support.prefect_server import PrefectServer, free_port
from support.s3_server import S3Server

from rescue_runner import storage

pytestmark = pytest.mark.slow

REVENUE = "model.lakehouse.mart_revenue"  # incremental; heavy here only by its history
ORDERS = "model.lakehouse.int_orders"
RESCUE = [str(Path(sys.executable).parent / "rescue")]


def _env(*parts: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_"))}
    for p in parts:
        env.update(p)
    return env


def test_a_real_flow_run_writes_its_artifacts_to_the_bucket(
        example_copy: ExampleBuild, prefect_server: PrefectServer, s3_server: S3Server, s3_bucket: str,
        tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json
        from rescue_runner.flows.transform_and_catalog import transform_and_catalog
        summary = transform_and_catalog(
            dbt_selects={{"select": "stg_orders"}}, run_results_storage_path="s3://{s3_bucket}/runs",
            dbt_project_path={str(example_copy.project_dir)!r},
            profiles_dir={str(example_copy.profiles_dir)!r}, target="dev")
        print("SUMMARY=" + json.dumps(summary, default=str))
    """)
    env = _env(dbt_env(example_copy.env), prefect_server.env, s3_server.env)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.split("SUMMARY=", 1)[1])
    run_id = summary["flow_run_id"]
    fs = s3_server.filesystem()
    stored_files = set(fs.ls(f"{s3_bucket}/runs/{run_id}"))
    assert {f"{s3_bucket}/runs/{run_id}/{name}"
            for name in ("catalog.json", "run_results.json", "summary.json")} <= stored_files
    stored = json.loads(fs.cat(f"{s3_bucket}/runs/{run_id}/summary.json"))
    assert stored["status"] == "success" and stored["flow_run_id"] == run_id
    results = json.loads(fs.cat(f"{s3_bucket}/runs/{run_id}/run_results.json"))["results"]
    assert {r["unique_id"] for r in results if r["status"] == "success"} == {"model.lakehouse.stg_orders"}
    # the flow run is the one the server knows
    import httpx

    flow_run = httpx.get(f"{prefect_server.api_url}/flow_runs/{run_id}", timeout=10).json()
    assert flow_run["state"]["type"] == "COMPLETED"


def _production_run(when: str, rows: dict[str, float]) -> bytes:
    return json.dumps({"metadata": {"generated_at": when, "dbt_schema_version":
                                    "https://schemas.getdbt.com/dbt/run-results/v6.json"},
                       "results": [{"unique_id": uid, "status": "success", "execution_time": secs,
                                    "timing": []} for uid, secs in rows.items()]}).encode()


@pytest.fixture
def fresh_checkout(tmp_path: Path, s3_bucket: str) -> Path:
    """A clone of a repository holding the example project, a request and rescue.yaml whose
    history is in the bucket: no run history on this machine."""
    origin = tmp_path / "origin"
    repo = git.Repo.init(origin, initial_branch="main")
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "lakehouse", origin / "lakehouse",
                    ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    (origin / "rescue.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        dbt: {{project_dir: lakehouse, profiles_dir: lakehouse, target: dev, adapter: duckdb,
              history: "s3://{s3_bucket}/history"}}
        prefect: {{run_results_storage_path: "s3://{s3_bucket}/history"}}
        policy:
          heavy: {{min_minutes: 30}}
          quiet_windows:
            allow: [{{name: nightly, timezone: Europe/Berlin, start: "22:00", end: "06:00"}}]
        """))
    (origin / "rescues").mkdir()
    (origin / "rescues" / "2026-12-01-revenue.yaml").write_text(textwrap.dedent("""\
        version: 1
        reason: "Revenue logic changed: rebuild the tables from scratch"
        requested_by: ana.engineer
        select: int_orders mart_revenue
        full_refresh: true
        """))
    repo.index.add(["lakehouse", "rescue.yaml", "rescues"])
    who = git.Actor("t", "t@example.com")
    repo.index.commit("project", author=who, committer=who)
    clone = tmp_path / "checkout"
    git.Repo.clone_from(str(origin), clone)
    assert not (clone / ".rescue").exists()
    return clone


def _rescue(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RESCUE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_a_fresh_checkout_plans_with_estimates_from_the_bucket(
        fresh_checkout: Path, s3_server: S3Server, s3_bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fs = s3_server.filesystem()
    # a scheduled production run writing there under its own name, and one of the tool's own runs
    fs.pipe(f"{s3_bucket}/history/prod/run_results_2026-11-30.json",
            _production_run("2026-11-30T03:00:00Z", {REVENUE: 2700.0, ORDERS: 100.0}))
    fs.pipe(f"{s3_bucket}/history/0b7c/run_results.json",
            _production_run("2026-12-01T03:00:00Z", {ORDERS: 140.0}))
    fs.pipe(f"{s3_bucket}/history/0b7c/summary.json", b"{}")
    env = _env(dbt_env({"LAKEHOUSE_DB": str(tmp_path / "lake.duckdb")}), s3_server.env)

    proc = _rescue(["validate", "--format", "json", "rescues/2026-12-01-revenue.yaml"], fresh_checkout, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # RR301 blocks: heavy full refresh, no window
    report = json.loads(proc.stdout)["requests"][0]
    rr301 = [f for f in report["findings"] if f["code"] == "RR301"]
    assert rr301 and "mart_revenue" in rr301[0]["message"]
    assert "45 min in the run history" in rr301[0]["message"]
    batches = report["plan"]["batches"]
    # medians from the bucket: mart_revenue 2700 s, int_orders (100, 140) -> 120 s
    assert sum(b["estimated_seconds"] for b in batches) == pytest.approx(2700.0 + 120.0)
    assert all(not b["unknown_estimates"] for b in batches), batches
    # the next job with this cache downloads nothing that did not change
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    again = storage.sync_history(f"s3://{s3_bucket}/history", fresh_checkout / ".rescue" / "cache")
    assert (again.files, again.fetched) == (2, 0)


def test_unreachable_storage_is_a_one_line_exit_2(fresh_checkout: Path, s3_server: S3Server,
                                                  tmp_path: Path) -> None:
    dead = {**s3_server.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    env = _env(dbt_env({"LAKEHOUSE_DB": str(tmp_path / "lake.duckdb")}), dead)
    proc = _rescue(["validate", "rescues/2026-12-01-revenue.yaml"], fresh_checkout, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: s3://") and "storage unreachable" in lines[0], proc.stderr
    assert len(lines) <= 2 and "Traceback" not in proc.stderr


