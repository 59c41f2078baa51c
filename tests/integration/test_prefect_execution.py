"""Execution through a real Prefect server and process worker on 127.0.0.1, and embedded mode
(in-process, recorded in the local run record).

Real dbt-duckdb on a copy of examples/lakehouse, committed and pushed to a bare remote; the
worker gets the repository URL and the commit, fetches it into its own cache, and the
warehouse path through the deployment's job variables. Tests in this module run in file order and
share one warehouse copy: each waits for its runs before the next touches DuckDB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import git
import pytest
from support.example import ExampleBuild, copy_example
from support.prefect_server import TELEMETRY_OFF, PrefectServer, PrefectWorker, free_port
from support.rescue_repo import git as run_git
from support.rescue_repo import publish

from rescue_runner import execution
from rescue_runner.adapters import local_runs, prefect_api, prefect_artifacts
from rescue_runner.adapters.dbt import DbtProject
from rescue_runner.config import Config, config_from_data
from rescue_runner.errors import RescueError
from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json
from rescue_runner.model import NodeInfo, PlannedBatch, ProjectGraph
from rescue_runner.reporting.prefect_run import RunContext

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 240.0
FLOW = "transform_and_catalog"
BATCH_1 = PlannedBatch(1, ("model.lakehouse.int_orders", "model.lakehouse.mart_revenue"), False, 5.0)
BATCH_2 = PlannedBatch(2, ("model.lakehouse.int_customer_orders", "model.lakehouse.mart_customers"),
                       False, 5.0)
SMALL_BATCH = PlannedBatch(1, ("model.lakehouse.stg_orders",), False, 1.0)
FAILING_TEST = "test.lakehouse.unique_int_customer_orders_customer_id"
NEW_ORDER_ID = 900001
NEW_ORDER_DATE = "2026-12-31"


# ---- helpers -------------------------------------------------------------------------------

def _config(lake: ExampleBuild, **prefect: Any) -> Config:
    root = lake.project_dir.parent
    return config_from_data(root, {
        "dbt": {"project_dir": str(lake.project_dir), "profiles_dir": str(lake.profiles_dir),
                "target": "dev"},
        "prefect": {"run_results_storage_path": str(root / "runs"), **prefect},
    })


def _with_prefect(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, prefect=dataclasses.replace(config.prefect, **changes))


def _sql(lake: ExampleBuild, *statements: str) -> list[Any]:
    """Run statements on the warehouse, then close it (DuckDB allows one writer process)."""
    con = duckdb.connect(str(lake.db_path))
    try:
        out: list[Any] = []
        for s in statements:
            out = con.execute(s).fetchall()
        return out
    finally:
        con.close()


def _insert_new_order(lake: ExampleBuild) -> None:
    _sql(lake,
         f"insert into raw_orders values ({NEW_ORDER_ID}, 14, DATE '{NEW_ORDER_DATE}', 'completed')",
         f"insert into raw_payments values ({NEW_ORDER_ID}, {NEW_ORDER_ID}, 'credit_card', 12345)")


@contextlib.contextmanager
def _client(api_url: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


def _wait(server: PrefectServer, run_id: str) -> prefect_api.FlowRunInfo:
    info = prefect_api.wait_for_flow_run(server.api_url, run_id, timeout=RUN_TIMEOUT)
    assert info.is_final, f"run {run_id} still {info.state_type} after {RUN_TIMEOUT} s"
    return info


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lake(example_build: ExampleBuild, tmp_path_factory: pytest.TempPathFactory) -> ExampleBuild:
    lake = copy_example(example_build, tmp_path_factory.mktemp("prefect-lake") / "example")
    publish(lake.project_dir.parent)
    return lake


@pytest.fixture(scope="module")
def config(lake: ExampleBuild) -> Config:
    return _config(lake)


@pytest.fixture(scope="module")
def graph(lake: ExampleBuild) -> ProjectGraph:
    return graph_from_manifest_dict(load_manifest_json(lake.manifest_path))


@pytest.fixture(scope="module")
def dbt_project(lake: ExampleBuild) -> DbtProject:
    return DbtProject.from_manifest(lake.manifest_path, project_root=lake.project_dir)


@pytest.fixture(scope="module")
def job_variables(lake: ExampleBuild) -> dict[str, Any]:
    return {"env": {"LAKEHOUSE_DB": str(lake.db_path), **TELEMETRY_OFF}}


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer, prefect_worker: PrefectWorker, config: Config,
             job_variables: dict[str, Any]) -> tuple[execution.DeployReport, execution.DeployReport]:
    first = execution.deploy(config, api_url=prefect_server.api_url, job_variables=job_variables)
    second = execution.deploy(config, api_url=prefect_server.api_url, job_variables=job_variables)
    return first, second


# ---- selectors -----------------------------------------------------------------------------

def test_batch_selectors_select_exactly_each_model(graph: ProjectGraph, dbt_project: DbtProject) -> None:
    """Differential: dbt's own selector code picks exactly the node each selector was made for."""
    models = sorted(u for u, n in graph.nodes.items() if n.resource_type == "model")
    assert len(models) >= 10
    for uid in models:
        assert dbt_project.select(execution.batch_selectors([uid], graph)) == {uid}
    assert dbt_project.select(execution.batch_selectors(models, graph)) == set(models)


def test_fast_cycle_check_still_finds_cycles() -> None:
    from dbt.compilation import Linker

    from rescue_runner.flows.batch import fast_cycle_check

    original = Linker.find_cycles
    linker = Linker()
    for a, b in (("a", "b"), ("b", "c")):
        linker.dependency(b, a)
    with fast_cycle_check():
        assert Linker.find_cycles is not original
        assert linker.find_cycles() is None
        linker.dependency("a", "c")
        assert linker.find_cycles() == original(linker)
        assert linker.find_cycles() is not None
    assert Linker.find_cycles is original


# ---- deploy --------------------------------------------------------------------------------

def test_deploy_twice_is_idempotent(deployed: tuple[execution.DeployReport, execution.DeployReport],
                                    prefect_server: PrefectServer, config: Config) -> None:
    first, second = deployed
    assert first.deployment_id == second.deployment_id
    assert first.deployment == second.deployment == f"{FLOW}/dbt_rerun"
    assert "work queue dbt exists (limit 5)" in second.notes
    assert f"updated deployment {FLOW}/dbt_rerun ({second.deployment_id})" in second.notes
    with _client(prefect_server.api_url) as client:
        pool = client.read_work_pool("rescue")
        queue = client.read_work_queue_by_name("dbt", work_pool_name="rescue")
        deps = client.read_deployments()
    assert pool.type == "process"
    assert queue.concurrency_limit == config.prefect.queue_concurrency == 5
    ours = [d for d in deps if d.name == "dbt_rerun"]
    assert len(ours) == 1
    assert ours[0].work_queue_name == "dbt" and ours[0].entrypoint == prefect_api.FLOW_ENTRYPOINT
    # Paths inside the repository, never this machine's: workers build a checkout of a commit.
    assert ours[0].parameters["dbt_project_path"] == "lakehouse"
    assert ours[0].parameters["profiles_dir"] == "lakehouse"
    assert ours[0].parameters["target"] == "dev"


def test_cli_deploy_is_the_same_idempotent_deploy(
        deployed: tuple[execution.DeployReport, execution.DeployReport], prefect_server: PrefectServer,
        lake: ExampleBuild, job_variables: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`rescue deploy` from rescue.yaml updates the same deployment; --env NAME copies a value."""
    from rescue_runner.cli import main

    root = lake.project_dir.parent
    cfg = root / "rescue.yaml"  # untracked: only the commit's files are ever built
    cfg.write_text(json.dumps({
        "version": 1,
        "dbt": {"project_dir": str(lake.project_dir), "profiles_dir": str(lake.profiles_dir),
                "target": "dev"},
        "prefect": {"run_results_storage_path": str(root / "runs")},
    }), encoding="utf-8")
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.api_url)
    monkeypatch.setenv("LAKEHOUSE_DB", job_variables["env"]["LAKEHOUSE_DB"])
    args = ["--config", str(cfg), "deploy", "--format", "json", "--env", "LAKEHOUSE_DB",
            *[f"--env={k}={v}" for k, v in job_variables["env"].items() if k != "LAKEHOUSE_DB"]]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["deployment_id"] == str(deployed[0].deployment_id)
    with _client(prefect_server.api_url) as client:
        dep = client.read_deployment(deployed[0].deployment_id)
    assert dep.job_variables["env"]["LAKEHOUSE_DB"] == str(lake.db_path)
    assert dep.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"  # liveness default
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert main(["--config", str(cfg), "deploy", "--env", "NOT_SET_ANYWHERE"]) == 2
    assert "not set in this environment" in capsys.readouterr().err


# ---- two batches on the worker -------------------------------------------------------------

def test_two_batches_run_on_worker_and_batch_2_fails_on_its_test(
        deployed: Any, prefect_server: PrefectServer, config: Config, graph: ProjectGraph,
        dbt_project: DbtProject, lake: ExampleBuild) -> None:
    url = prefect_server.api_url
    _insert_new_order(lake)
    before = _sql(lake, "select count(*) from int_orders")[0][0]

    s1 = execution.submit_batch(config, "req-prefect", "sha256:r1", BATCH_1, 1, graph,
                                verify=dbt_project.select, api_url=url)
    assert s1.mode == "server" and s1.name == "req-prefect-batch-1"
    assert s1.url == execution.ui_url(url, s1.flow_run_id)
    run1 = _wait(prefect_server, s1.flow_run_id)
    assert run1.state_type == "COMPLETED", run1.state_message
    assert run1.name == "req-prefect-batch-1" and "rescue:req-prefect" in run1.tags
    assert run1.parameters["dbt_selects"] == {
        "select": "path:models/intermediate/int_orders.sql,package:lakehouse "
                  "path:models/marts/mart_revenue.sql,package:lakehouse"}
    assert run1.parameters["full_refresh"] is False
    assert run1.parameters["run_results_storage_path"] == str(config.prefect.run_results_storage_path)
    head = run_git(config.root, "rev-parse", "HEAD").strip()
    assert run1.parameters["dbt_repo_commit"] == s1.commit == head
    assert run1.parameters["dbt_repo_url"] == config.root.with_name("example.origin.git").as_uri()

    # Rebuilt: the new raw order is in int_orders and its day in the incremental mart.
    assert _sql(lake, "select count(*) from int_orders")[0][0] == before + 1
    assert _sql(lake, f"select amount from int_orders where order_id = {NEW_ORDER_ID}") == [(123.45,)]
    assert _sql(lake, f"select order_count from mart_revenue where order_date = DATE '{NEW_ORDER_DATE}'") \
        == [(1,)]

    out = Path(str(config.prefect.run_results_storage_path)) / s1.flow_run_id
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "success" and summary["catalog"] == "ok"
    assert summary["flow_run_id"] == s1.flow_run_id and summary["failed"] == []
    assert summary["project"] == {"repo_url": run1.parameters["dbt_repo_url"], "commit": head,
                                  "path": "lakehouse"}
    results = json.loads((out / "run_results.json").read_text())["results"]
    built = {r["unique_id"] for r in results if r["unique_id"].startswith("model.")}
    assert built == set(BATCH_1.models)
    catalog = json.loads((out / "catalog.json").read_text())
    assert set(BATCH_1.models) <= set(catalog["nodes"])

    # Batch 2: a duplicated customer breaks int_customer_orders' unique test.
    _sql(lake, "insert into raw_customers values "
               "(1, 'Eve', 'Dup', 'dup@example.com', 'FR', DATE '2025-01-01')")
    s2 = execution.submit_batch(config, "req-prefect", "sha256:r1", BATCH_2, 1, graph, api_url=url)
    run2 = _wait(prefect_server, s2.flow_run_id)
    assert run2.state_type == "FAILED"
    assert FAILING_TEST in (run2.state_message or ""), run2.state_message
    summary2 = json.loads((Path(str(config.prefect.run_results_storage_path)) / s2.flow_run_id
                           / "summary.json").read_text())
    assert summary2["status"] == "failed"
    assert [f["unique_id"].rsplit(".", 1)[0] for f in summary2["failed"]] == [FAILING_TEST]
    assert "model.lakehouse.mart_customers" in summary2["skipped"]
    _sql(lake, "delete from raw_customers where email = 'dup@example.com'")


# ---- idempotency ---------------------------------------------------------------------------

_CRASHING_SUBMITTER = textwrap.dedent("""
    import json, os, sys
    from rescue_runner import execution
    from rescue_runner.config import config_from_data
    from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json
    from rescue_runner.model import PlannedBatch
    a = json.loads(sys.argv[1])
    config = config_from_data(__import__("pathlib").Path(a["root"]), a["data"])
    graph = graph_from_manifest_dict(load_manifest_json(a["manifest"]))
    batch = PlannedBatch(1, tuple(a["models"]), False, 1.0)
    execution.submit_batch(config, "req-idem", "sha256:idem", batch, 1, graph, api_url=a["url"])
    os._exit(17)  # the runner dies before it can record the flow run id
""")


def test_resubmit_after_crash_returns_the_same_run(
        deployed: Any, prefect_server: PrefectServer, config: Config, graph: ProjectGraph,
        lake: ExampleBuild) -> None:
    url = prefect_server.api_url
    arg = {"root": str(config.root), "manifest": str(lake.manifest_path), "url": url,
           "models": list(SMALL_BATCH.models),
           "data": {"dbt": {"project_dir": str(lake.project_dir), "profiles_dir": str(lake.profiles_dir),
                            "target": "dev"},
                    "prefect": {"run_results_storage_path": str(config.prefect.run_results_storage_path)}}}
    proc = subprocess.run([sys.executable, "-c", _CRASHING_SUBMITTER, json.dumps(arg)],
                          env=prefect_server.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr[-2000:]

    again = execution.submit_batch(config, "req-idem", "sha256:idem", SMALL_BATCH, 1, graph, api_url=url)
    third = execution.submit_batch(config, "req-idem", "sha256:idem", SMALL_BATCH, 1, graph, api_url=url)
    runs = prefect_api.read_flow_runs_by_tag(url, "rescue:req-idem")
    assert [r.id for r in runs] == [again.flow_run_id] == [third.flow_run_id]
    assert again.idempotency_key == third.idempotency_key == runs[0].idempotency_key
    assert _wait(prefect_server, again.flow_run_id).state_type == "COMPLETED"

    # A new attempt is a new run.
    retry = execution.submit_batch(config, "req-idem", "sha256:idem", SMALL_BATCH, 2, graph, api_url=url)
    assert retry.flow_run_id != again.flow_run_id
    assert _wait(prefect_server, retry.flow_run_id).state_type == "COMPLETED"


def test_key_reused_by_another_deployment_of_the_flow_is_an_error(
        deployed: Any, prefect_server: PrefectServer, config: Config, graph: ProjectGraph,
        job_variables: dict[str, Any]) -> None:
    from prefect.states import Scheduled

    url = prefect_server.api_url
    shadow = execution.deploy(_with_prefect(config, deployment="dbt_rerun_shadow"), api_url=url,
                              job_variables=job_variables)
    real = prefect_api.read_deployment(url, f"{FLOW}/dbt_rerun")
    assert shadow.deployment_id != real.id
    key = execution.idempotency_key(real.id, "req-collide", "sha256:c", 1, 1)
    with _client(url) as client:
        squatter = client.create_flow_run_from_deployment(
            shadow.deployment_id, parameters={"dbt_selects": {"select": "stg_orders"}},
            state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(days=1)),
            name="someone-else", idempotency_key=key)
    try:
        with pytest.raises(RescueError, match="not this batch") as err:
            execution.submit_batch(config, "req-collide", "sha256:c", SMALL_BATCH, 1, graph, api_url=url)
        assert str(squatter.id) in str(err.value) and shadow.deployment_id in str(err.value)
        assert "another deployment" in str(err.value)
        assert prefect_api.read_flow_runs_by_tag(url, "rescue:req-collide") == ()
    finally:
        with _client(url) as client:
            client.delete_flow_run(squatter.id)


def test_parameters_unknown_to_the_deployment_are_refused(
        deployed: Any, prefect_server: PrefectServer, config: Config, graph: ProjectGraph) -> None:
    url = prefect_server.api_url
    with _client(url) as client:
        flow_id = client.create_flow_from_name(FLOW)
        client.create_deployment(
            flow_id=flow_id, name="dbt_rerun_old", work_pool_name="rescue", work_queue_name="dbt",
            entrypoint=prefect_api.FLOW_ENTRYPOINT, parameter_openapi_schema={
                "type": "object", "properties": {"dbt_selects": {"type": "object"}}})
    with pytest.raises(RescueError, match=r"has no parameter\(s\) \['dbt_repo_commit', "
                                          r"'dbt_repo_token_secret', 'dbt_repo_url', 'event_time_end', "
                                          r"'event_time_start', 'full_refresh'\]"):
        execution.submit_batch(_with_prefect(config, deployment="dbt_rerun_old"), "req-old", "sha256:o",
                               SMALL_BATCH, 1, graph, api_url=url)


# ---- contention ----------------------------------------------------------------------------

_SLEEP_FLOW = textwrap.dedent("""
    import time
    from prefect import flow

    @flow(name="sleep_for")
    def sleep_for(seconds: float = 120.0) -> None:
        time.sleep(seconds)
""")


def test_contention_with_real_running_and_scheduled_runs(
        deployed: Any, prefect_server: PrefectServer, prefect_worker: PrefectWorker, config: Config,
        job_variables: dict[str, Any], tmp_path: Path) -> None:
    from prefect import flow as prefect_flow
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelling, Scheduled

    url = prefect_server.api_url
    small = _with_prefect(config, queue_concurrency=3)
    report = execution.deploy(small, api_url=url, job_variables=job_variables)
    assert "work queue dbt: concurrency limit 5 -> 3" in report.notes
    (tmp_path / "sleep_flow.py").write_text(_SLEEP_FLOW)
    started: list[Any] = []
    extra: list[Any] = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            sleeper = prefect_flow.from_source(source=str(tmp_path), entrypoint="sleep_flow.py:sleep_for")
            dep_id = sleeper.deploy(name="sleeper", work_pool_name="rescue", work_queue_name="dbt",
                                    build=False, push=False, print_next_steps=False, ignore_warnings=True)
            started = [run_deployment(dep_id, timeout=0, as_subflow=False, flow_run_name=f"sleeper-{i}")
                       for i in range(3)]
        _wait_running(url, [r.id for r in started])

        t0 = datetime.now(UTC)
        with _client(url) as client:
            for name, offset in (("late-one", -5), ("nightly-one", 12)):
                extra.append(client.create_flow_run_from_deployment(
                    dep_id, name=name, state=Scheduled(scheduled_time=t0 + timedelta(minutes=offset))))
        now = datetime.now(UTC)
        light = execution.contention(small, heavy=False, now=now, api_url=url)
        heavy = execution.contention(small, heavy=True, now=now, api_url=url)
        snap = execution.contention_snapshot(small, now=now, api_url=url)

        assert snap is not None and snap.queue_busy == 3 and snap.queue_limit == 3
        assert snap.workers_online >= 1
        assert [(r.name, r.deployment) for r in snap.due] == [("late-one", "sleeper"),
                                                              ("nightly-one", "sleeper")]
        assert not light.go and not heavy.go
        assert len(snap.running) == 3 and all(r.deployment == "sleeper" and r.started for r in snap.running)
        # The forecast: three sleepers hold the queue; the late run starts as soon as a slot frees.
        assert light.summary.startswith("wait: queue dbt would hold 5 of 2 usable slots at ")
        assert ("(limit 3, 1 reserved): sleeper x3 running; sleeper due, batch (1 slot(s)); next fit "
                in light.summary)
        assert heavy.needed_slots == 2 and light.needed_slots == 1
        assert "1 late scheduled run(s): sleeper due 5 min ago" in light.reasons
        assert light.next_fit is not None and light.next_fit > now

        # The same view of a pool nobody serves: no worker online.
        with _client(url) as client:
            from prefect.client.schemas.actions import WorkPoolCreate

            client.create_work_pool(WorkPoolCreate(name="rescue-idle", type="process"))
            client.create_work_queue(name="dbt", work_pool_name="rescue-idle", concurrency_limit=5)
        idle = execution.contention(_with_prefect(config, work_pool="rescue-idle"), heavy=False, api_url=url)
        assert not idle.go
        assert idle.summary == "wait: no worker online for work pool rescue-idle"
    finally:
        with _client(url) as client:
            for run in extra:
                client.delete_flow_run(run.id)
            for run in started:
                client.set_flow_run_state(run.id, Cancelling(), force=True)
        execution.deploy(config, api_url=url, job_variables=job_variables)
        _wait_final(url, [r.id for r in started], timeout=60)


def _wait_running(api_url: str, run_ids: list[Any], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [prefect_api.read_flow_run(api_url, str(i)).state_type for i in run_ids]
        if all(s == "RUNNING" for s in states):
            return
        time.sleep(0.5)
    raise AssertionError(f"sleepers not all RUNNING after {timeout} s: {states}")


def _wait_final(api_url: str, run_ids: list[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(prefect_api.read_flow_run(api_url, str(i)).is_final for i in run_ids):
            return
        time.sleep(1.0)


# ---- unreachable or missing API ------------------------------------------------------------

def test_unreachable_api_is_a_quick_rescue_error(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api"
    cfg = config_from_data(tmp_path, {})
    node = NodeInfo("model.p.a", "a", "model", original_file_path="models/a.sql")
    graph = ProjectGraph(nodes={"model.p.a": node}, parents={}, identity="x")
    batch = PlannedBatch(1, ("model.p.a",), False, 1.0)
    for call in (lambda: execution.contention(cfg, heavy=False, api_url=dead),
                 lambda: execution.submit_batch(cfg, "r", "h", batch, 1, graph, api_url=dead),
                 lambda: execution.deploy(cfg, api_url=dead)):
        t0 = time.monotonic()
        with pytest.raises(RescueError, match="unreachable"):
            call()
        assert time.monotonic() - t0 < 5.0


def test_deploy_without_api_url_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(RescueError, match="PREFECT_API_URL is not set"):
        execution.deploy(config_from_data(tmp_path, {}))


# ---- embedded mode -------------------------------------------------------------------------

def test_embedded_mode_runs_the_batch_in_process(
        example_copy: ExampleBuild, graph: ProjectGraph, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("LAKEHOUSE_DB", str(example_copy.db_path))
    cfg = _config(example_copy)
    publish(cfg.root)
    _insert_new_order(example_copy)

    run = execution.submit_batch(cfg, "req-embedded", "sha256:e", BATCH_1, 1, graph)
    assert run.mode == "embedded" and run.state == "COMPLETED", run.message
    assert run.commit == run_git(cfg.root, "rev-parse", "HEAD").strip()
    assert run.name == "req-embedded-batch-1" and run.url is None
    assert _sql(example_copy, f"select count(*) from int_orders where order_id = {NEW_ORDER_ID}") == [(1,)]
    out = Path(str(run.artifacts_dir))
    produced = {p.name for p in out.iterdir()} - {"dbt.log"}
    assert produced == {"run_results.json", "catalog.json", "summary.json"}
    assert execution.contention(cfg, heavy=True).go
    # The run is in the local run record, final, with who ran it; no Prefect database anywhere.
    home = execution.embedded_runs_home(cfg)
    rec = local_runs.record(home, run.flow_run_id)
    assert rec is not None and rec["state_type"] == "COMPLETED" and rec["name"] == run.name
    assert rec["idempotency_key"] == run.idempotency_key and rec["pid"] == os.getpid()
    assert rec["started"] <= rec["ended"] and rec["parameters"]["dbt_repo_commit"] == run.commit
    assert [r.id for r in local_runs.find_runs(home, "rescue:req-embedded")] == [run.flow_run_id]
    assert not list(cfg.root.rglob("prefect.db"))

    # A manifest the planner parsed from the commit's tree is reused: the flow does not parse again.
    from rescue_runner.adapters.git_checkout import tree_at

    _, tree = tree_at(cfg.root, "HEAD", cfg.root / ".rescue" / "checkouts")
    planned = DbtProject.from_project(tree / "lakehouse", tree / "lakehouse", cfg.dbt.target)
    ctx = RunContext(request_id="req-embedded", batch=1, batches=(SMALL_BATCH,),
                     ticket="DATA-7")
    again = execution.submit_batch(cfg, "req-embedded", "sha256:e", SMALL_BATCH, 1, planned.graph(),
                                   manifest=planned.manifest, context=ctx)
    assert again.state == "COMPLETED", again.message
    summary = json.loads((Path(str(again.artifacts_dir)) / "summary.json").read_text())
    assert summary["manifest"].startswith("preloaded") and summary["seconds"]["parse"] == 0.0
    # Embedded runs carry the same tags and artifacts, in the local run record: the context
    # before the batch started, the result when it ended.
    assert {"rescue", "rescue:req-embedded", "ticket:DATA-7", "batch:1/1"} <= set(again.tags)
    arts = prefect_artifacts.read_markdown(again.flow_run_id, local_home=home)
    assert [a.key for a in arts] == ["rescue-req-embedded", "rescue-req-embedded-result"] and not again.notes
    assert arts[0].data.startswith("# Rescue `req-embedded`: batch 1 of 1")
    assert arts[1].data.startswith("# dbt build succeeded") and "model.lakehouse.stg_orders" in arts[1].data

    # A failing batch is a FAILED run with dbt's message, never an exception into the caller.
    broken = _with_prefect(cfg, run_results_storage_path=str(tmp_path / "runs-broken"))
    monkeypatch.setenv("LAKEHOUSE_DB", str(tmp_path / "no-such-dir" / "lake.duckdb"))
    failed = execution.submit_batch(broken, "req-embedded", "sha256:e", SMALL_BATCH, 2, planned.graph())
    assert failed.state == "FAILED" and "DbtBuildFailed" in str(failed.message), failed.message
    rec = local_runs.record(home, failed.flow_run_id)
    assert rec is not None and rec["state_type"] == "FAILED" and rec["message"] == failed.message
    result = prefect_artifacts.read_markdown(failed.flow_run_id, local_home=home)[-1]
    assert result.key == "rescue-req-embedded-result" and result.data.startswith("# dbt build FAILED")


def test_an_embedded_batch_imports_no_prefect(example_copy: ExampleBuild, graph: ProjectGraph,
                                             tmp_path: Path) -> None:
    """A fresh process that runs one embedded batch never imports prefect (its cold start)."""
    cfg = _config(example_copy)
    publish(cfg.root)
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from rescue_runner import execution
        from rescue_runner.config import config_from_data
        from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json
        from rescue_runner.model import PlannedBatch
        config = config_from_data(Path({str(cfg.root)!r}), {{
            "dbt": {{"project_dir": {str(example_copy.project_dir)!r},
                     "profiles_dir": {str(example_copy.profiles_dir)!r}, "target": "dev"}},
            "prefect": {{"run_results_storage_path": {str(tmp_path / "runs")!r}}}}})
        graph = graph_from_manifest_dict(load_manifest_json({str(example_copy.manifest_path)!r}))
        run = execution.submit_batch(config, "req-noprefect", "sha256:n",
                                     PlannedBatch(1, ("model.lakehouse.stg_orders",), False, 1.0), 1, graph)
        print("RESULT=" + json.dumps([run.state, run.message,
                                      sorted(m for m in sys.modules if m.split(".")[0] == "prefect")]))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DBT_"))}
    env.update(TELEMETRY_OFF, LAKEHOUSE_DB=str(example_copy.db_path))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state, message, imported = json.loads(proc.stdout.split("RESULT=", 1)[1])
    assert state == "COMPLETED", message
    assert imported == []


def test_flow_clones_the_project_from_git(example_copy: ExampleBuild, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """dbt_repo_url/dbt_repo_commit: a bare remote in a temp dir, the project in a subfolder; the
    commit is fetched by SHA into the worker's cache. The flow's body, as a worker's flow run calls it
    (the Prefect wrapper around it is exercised by the worker tests)."""
    import logging

    from rescue_runner.dbt_args import UnsafeDbtArgument
    from rescue_runner.flows.batch import build_batch

    work = tmp_path / "work"
    shutil.copytree(example_copy.project_dir, work / "lakehouse",
                    ignore=shutil.ignore_patterns("target", "logs"))
    repo = git.Repo.init(work)
    repo.git.checkout("-b", "rescue-test")
    repo.index.add(["lakehouse"])
    repo.index.commit("example project")
    remote = tmp_path / "remote.git"
    git.Repo.clone_from(str(work), str(remote), bare=True)
    monkeypatch.setenv("LAKEHOUSE_DB", str(example_copy.db_path))
    monkeypatch.setenv("RESCUE_CACHE_DIR", str(tmp_path / "worker-cache"))
    _insert_new_order(example_copy)
    sha = repo.head.commit.hexsha

    log = logging.getLogger("test-flow-clone")
    summary = build_batch(
        log, "run-clone", dbt_selects={"run": "int_orders"}, run_results_storage_path=str(tmp_path / "runs"),
        dbt_repo_url=remote.as_uri(), dbt_repo_commit=sha, dbt_project_path="lakehouse",
        profiles_dir="lakehouse", target="dev")
    assert summary["status"] == "success"
    assert summary["project"] == {"repo_url": remote.as_uri(), "commit": sha, "path": "lakehouse"}
    tree = tmp_path / "worker-cache" / "checkouts" / "trees" / sha
    assert (tree / "lakehouse" / "dbt_project.yml").is_file()
    with pytest.raises(UnsafeDbtArgument, match="needs dbt_repo_commit"):
        build_batch(log, "run-no-commit", dbt_selects={"run": "int_orders"},
                    run_results_storage_path=str(tmp_path / "runs"), dbt_repo_url=remote.as_uri(),
                    dbt_project_path="lakehouse")
    assert _sql(example_copy, f"select count(*) from int_orders where order_id = {NEW_ORDER_ID}") == [(1,)]
