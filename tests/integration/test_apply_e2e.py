"""``rescue apply`` end to end on real parts: a bare git remote in a temp dir, the session's Prefect
server and process worker on 127.0.0.1, the bundled DuckDB project. The article's three scenarios.

The module shares one warehouse copy and one test repository; scenarios run in file order and
each waits for its runs before the next one touches DuckDB. Ticks run the installed ``rescue``
command in the runner clone with ``RESCUE_NOW`` (the test hook for the clock) as cron would.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from support.example import ExampleBuild, copy_example
from support.prefect_server import PrefectServer, PrefectWorker
from support.rescue_repo import RescueRepo, config, git, make_repo

from rescue_runner import audit, execution
from rescue_runner.adapters import prefect_api

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "rescues"
RUN_TIMEOUT = 240.0
POLICY = {"heavy": {"meta_key": "rescue.heavy"},
          "quiet_windows": {"allow": [{"name": "night", "timezone": "Europe/Berlin", "start": "00:00",
                                       "end": "06:00"}]}}


# Independent of mart_revenue (no shared model, no shared upstream).
LIGHT_REQUEST = """version: 1
reason: "Monthly events mart showed a stale month; rebuild just that mart"
requested_by: oncall.data
ticket: DATA-1440
select: mart_events_monthly
"""


# ---- helpers -------------------------------------------------------------------------------

def sql(lake: ExampleBuild, *statements: str) -> list[Any]:
    con = duckdb.connect(str(lake.db_path))  # one writer at a time: always closed again
    try:
        out: list[Any] = []
        for s in statements:
            out = con.execute(s).fetchall()
        return out
    finally:
        con.close()


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tick(repo: RescueRepo, now: datetime, *args: str) -> str:
    proc = repo.rescue("apply", *args, env={"RESCUE_NOW": iso(now)})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout


def events(repo: RescueRepo, rid: str) -> list[audit.AuditEvent]:
    return audit.order(e for e in repo.audit_events() if e.request_id == rid)


def in_flight(repo: RescueRepo, rid: str) -> audit.BatchRecord | None:
    return audit.derive(rid, events(repo, rid)).in_flight


def wait_run(server: PrefectServer, run_id: str) -> prefect_api.FlowRunInfo:
    info = prefect_api.wait_for_flow_run(server.api_url, run_id, timeout=RUN_TIMEOUT, poll_seconds=0.5)
    assert info.is_final, f"run {run_id} still {info.state_type} after {RUN_TIMEOUT} s"
    return info


def runs_of(server: PrefectServer, rid: str) -> list[prefect_api.FlowRunInfo]:
    return list(prefect_api.read_flow_runs_by_tag(server.api_url, execution.run_tag(rid)))


@contextlib.contextmanager
def client(api_url: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        yield c


def run_times(server: PrefectServer, run_id: str) -> tuple[datetime, datetime]:
    with client(server.api_url) as c:
        run = c.read_flow_run(run_id)
    assert run.start_time is not None and run.end_time is not None
    return run.start_time, run.end_time


def assert_trail(repo: RescueRepo, rid: str, expected: list[str]) -> list[audit.AuditEvent]:
    trail = events(repo, rid)
    assert [e.type for e in trail] == expected, [e.type for e in trail]
    assert audit.check_consistency(repo.audit_events()) == []
    return trail


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lake(example_build: ExampleBuild, tmp_path_factory: pytest.TempPathFactory) -> ExampleBuild:
    return copy_example(example_build, tmp_path_factory.mktemp("apply-lake") / "example")


@pytest.fixture(scope="module")
def repo(prefect_server: PrefectServer, prefect_worker: PrefectWorker, lake: ExampleBuild,
         tmp_path_factory: pytest.TempPathFactory) -> RescueRepo:
    root = tmp_path_factory.mktemp("apply-e2e")
    repo = make_repo(root, lake.project_dir, config(storage=root / "runs", policy=POLICY),
                     env=prefect_server.env)
    # The deployment runs the runner clone's project against the lake's warehouse.
    repo.deploy(prefect_server.api_url, lake.db_path)
    return repo


# ---- scenario 1: a merged hotfix -----------------------------------------------------------

def test_merged_hotfix_of_int_orders_rebuilds_it_and_its_marts_batch_by_batch(
        repo: RescueRepo, lake: ExampleBuild, prefect_server: PrefectServer) -> None:
    rid = "2026-11-23-int-orders-hotfix"
    sql(lake, "insert into raw_orders values (900001, 14, DATE '2026-12-31', 'completed')",
        "insert into raw_payments values (900001, 900001, 'credit_card', 12345)")
    repo.merge_request(rid, (SHIPPED / f"{rid}.yaml").read_text())  # 3 batches of 3 models, 1 min pause

    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    outputs = []
    for _ in range(12):
        outputs.append(tick(repo, now))
        rec = in_flight(repo, rid)
        if rec is not None:
            wait_run(prefect_server, rec.flow_run_id or "")
        if audit.derive(rid, events(repo, rid)).terminal:
            break
        now += timedelta(seconds=45)  # a pause of 1 min needs two ticks: the first one waits
    log = "".join(outputs)
    assert f"{rid}: validated: 3 batch(es)" in log
    assert re.search(rf"{rid}: waiting \(pause\): pause between batches: batch 2 not before", log)
    assert f"{rid}: succeeded: 3 batch(es) completed" in log

    trail = assert_trail(repo, rid, [
        "request_validated", "batch_submitted", "batch_finished", "waiting",
        "batch_submitted", "batch_finished", "waiting", "batch_submitted", "batch_finished",
        "request_finished"])
    validated = trail[0].fields
    assert validated["requested_by"] == "ana.engineer" and validated["ticket"] == "DATA-1412"
    assert [len(b["models"]) for b in validated["batches"]] == [3, 3, 2]
    # Batch k+1 only after batch k completed and the pause elapsed (injected clock).
    finished = [e for e in trail if e.type == "batch_finished"]
    submitted = [e for e in trail if e.type == "batch_submitted"]
    for prev, nxt in zip(finished, submitted[1:], strict=False):
        assert nxt.at >= prev.at + timedelta(minutes=1)
    assert all(e.fields["state"] == "completed" and e.fields["counts"].get("success") for e in finished)

    runs = sorted(runs_of(prefect_server, rid), key=lambda r: r.name)
    assert [r.name for r in runs] == [f"{rid}-batch-{k}" for k in (1, 2, 3)]
    assert [r.state_type for r in runs] == ["COMPLETED"] * 3
    assert {e.fields["flow_run_id"] for e in submitted} == {r.id for r in runs}
    assert all(e.fields["url"].endswith(f"/runs/flow-run/{e.fields['flow_run_id']}") for e in submitted)
    times = [run_times(prefect_server, r.id) for r in runs]
    assert times[0][1] <= times[1][0] and times[1][1] <= times[2][0]  # lineage order, one after another

    # Rebuilt: int_orders has the fixed data, and the marts downstream of it too.
    assert sql(lake, "select amount from int_orders where order_id = 900001") == [(123.45,)]
    assert sql(lake, "select order_count from mart_revenue where order_date = DATE '2026-12-31'") == [(1,)]
    assert tick(repo, now + timedelta(minutes=5)) == "nothing to do: no approved request is pending\n"
    status = repo.rescue("status", rid).stdout
    assert f"{rid}  succeeded  3/3" in status
    batches = [line.split()[2] for line in status.splitlines() if line.startswith("  batch")]
    assert batches == ["completed"] * 3


# ---- scenario 2: outage recovery -----------------------------------------------------------

def test_outage_recovery_rebuilds_the_lineage_in_lineage_ordered_batches(
        repo: RescueRepo, lake: ExampleBuild, prefect_server: PrefectServer) -> None:
    rid = "2026-11-23-events-backfill"
    october = "event_date >= DATE '2026-10-01' and event_date < DATE '2026-11-01'"
    before = sql(lake, f"select count(*) from int_events_daily where {october}")[0][0]
    assert before > 0
    sql(lake, f"delete from int_events_daily where {october}")  # the outage lost October
    repo.merge_request(rid, (SHIPPED / f"{rid}.yaml").read_text())  # 2 models per batch, no pause

    out = tick(repo, datetime(2026, 11, 23, 11, 0, tzinfo=UTC), "--wait", "--poll", "1", "--timeout", "400")
    assert f"{rid}: succeeded: 2 batch(es) completed" in out

    trail = events(repo, rid)
    assert [e.type for e in trail if e.type != "batch_running"] == [  # running is seen if a poll catches it
        "request_validated", "batch_submitted", "batch_finished", "batch_submitted", "batch_finished",
        "request_finished"]
    assert audit.check_consistency(repo.audit_events()) == []
    plan = trail[0].fields["batches"]
    assert plan[0]["models"][0] == "model.lakehouse.int_events_daily"  # ancestors first
    assert "model.lakehouse.mart_events_monthly" in plan[1]["models"]
    runs = sorted(runs_of(prefect_server, rid), key=lambda r: r.name)
    assert [r.state_type for r in runs] == ["COMPLETED", "COMPLETED"]
    assert all(r.parameters["event_time_start"] == "2026-10-01T00:00:00+00:00"
               and r.parameters["event_time_end"] == "2026-11-01T00:00:00+00:00" for r in runs)
    assert run_times(prefect_server, runs[0].id)[1] <= run_times(prefect_server, runs[1].id)[0]
    assert sql(lake, f"select count(*) from int_events_daily where {october}")[0][0] == before
    assert sql(lake, "select count(*) from mart_events_monthly where month = DATE '2026-10-01'")[0][0] > 0


# ---- scenario 3: a heavy full refresh in its quiet window ---------------------------------

def test_heavy_full_refresh_waits_for_its_window_and_for_queue_slots_then_runs(
        repo: RescueRepo, lake: ExampleBuild, prefect_server: PrefectServer) -> None:
    from prefect.states import Scheduled

    rid = "2026-11-24-mart-revenue-full-refresh"
    # A historic correction only a full refresh picks up (the incremental run redoes 3 days).
    sql(lake, "insert into int_orders select * replace (900002 as order_id, DATE '2026-01-05' as order_date) "
              "from int_orders where order_id = 1")
    jan5 = sql(lake, "select order_count from mart_revenue where order_date = DATE '2026-01-05'")[0][0]
    repo.merge_request(rid, (SHIPPED / f"{rid}.yaml").read_text())  # daily 01:00-05:00 Europe/Berlin

    noon = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    out = tick(repo, noon)
    assert (f"{rid}: waiting (window_closed): window closed: "
            "opens 2026-11-25 01:00 Europe/Berlin (00:00 UTC)") in out  # the request's zone, UTC beside it
    assert tick(repo, noon + timedelta(minutes=30)).count("waiting") == 1  # still closed, not recorded again

    # The window opens, but nightly work is due in the queue while the heavy batch would run: it
    # waits, and says until when. An independent light request merged after it is not held back.
    light = "2026-11-24-events-monthly-hotfix"
    repo.merge_request(light, LIGHT_REQUEST)
    night = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)  # 01:30 in Berlin
    dep = prefect_api.read_deployment(prefect_server.api_url, "transform_and_catalog/rescue_e2e")
    due = datetime.now(UTC) + timedelta(minutes=2)
    with client(prefect_server.api_url) as c:
        params = {"dbt_selects": {"select": "stg_orders"}}
        nightly = [c.create_flow_run_from_deployment(dep.id, parameters=params, name=f"nightly-marts-{i}",
                                                     state=Scheduled(scheduled_time=due))
                   for i in range(3)]
    try:
        out = tick(repo, night)
        assert re.search(rf"{rid}: waiting \(queue_busy\): wait: queue dbt would hold 5 of 4 usable slots at "
                         r".*rescue_e2e x3 due, batch \(2 slot\(s\)\); next fit (\S+ )?\d\d:\d\d "
                         r"(Europe/Berlin \((\S+ )?\d\d:\d\d UTC\)|UTC), after rescue_e2e ends", out), out
        assert runs_of(prefect_server, rid) == []
        assert f"{light}: batch 1/1 submitted" in out
        (light_run,) = runs_of(prefect_server, light)
        # A dry run shows the same decision and changes nothing.
        recorded = len(repo.audit_events())
        dry = tick(repo, night, "--dry-run")
        assert f"{rid}: (dry run) queue for batch 1: wait: " in dry
        assert len(repo.audit_events()) == recorded and runs_of(prefect_server, rid) == []
    finally:
        with client(prefect_server.api_url) as c:
            for run in nightly:
                c.delete_flow_run(run.id)
    assert wait_run(prefect_server, light_run.id).state_type == "COMPLETED"  # one DuckDB writer at a time
    out = tick(repo, night + timedelta(minutes=2))  # the nightly runs are gone: the heavy batch fits now
    assert f"{light}: succeeded" in out and f"{rid}: batch 1/1 submitted" in out
    (run,) = runs_of(prefect_server, rid)
    assert run.parameters["full_refresh"] is True
    assert wait_run(prefect_server, run.id).state_type == "COMPLETED"
    assert f"{rid}: succeeded" in tick(repo, night + timedelta(minutes=10))

    trail = assert_trail(repo, rid, ["request_validated", "waiting", "waiting", "batch_submitted",
                                     "batch_finished", "request_finished"])
    assert [e.fields["kind"] for e in trail if e.type == "waiting"] == ["window_closed", "queue_busy"]
    assert trail[1].fields["until"] == "2026-11-25T00:00:00Z"
    assert trail[0].fields["batches"][0]["heavy"] is True and trail[0].fields["batches"][0]["full_refresh"]
    assert sql(lake, "select order_count from mart_revenue where order_date = DATE '2026-01-05'") \
        == [(jan5 + 1,)]
    # Pushed: the remote's audit branch has one commit per event, and the lock is gone.

    assert int(git(repo.origin, "rev-list", "--count", "rescue-audit")) == len(repo.audit_events())
    assert git(repo.origin, "for-each-ref", "refs/rescue-locks/") == ""


def test_status_and_log_tell_the_story(repo: RescueRepo) -> None:
    t0 = time.monotonic()
    status = repo.rescue("status", "--format", "json", env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    got = {r["id"]: r for r in json.loads(status.stdout)["requests"]}
    assert {rid: r["state"] for rid, r in got.items()} == {
        "2026-11-23-int-orders-hotfix": "succeeded", "2026-11-23-events-backfill": "succeeded",
        "2026-11-24-mart-revenue-full-refresh": "succeeded", "2026-11-24-events-monthly-hotfix": "succeeded"}
    assert all(b["state"] == "completed" and b["flow_run_id"] for r in got.values() for b in r["batches"])
    log = repo.rescue("log").stdout.splitlines()
    assert len(log) == len(repo.audit_events())
    assert "validated requested by ana.engineer (DATA-1412)" in log[0]
    assert time.monotonic() - t0 < 10
