"""Dead runs on real parts: a worker and its flow-run process SIGKILLed mid-batch.

Prefect's own mechanism does the detection: `rescue deploy` switches on flow-run heartbeats
for the deployment and creates an automation that marks a run CRASHED when they stop. The
runner then records the crash, ends the request needs_operator and alerts a webhook naming
the run. This test starts its OWN short-lived worker on its own pool and queue (the session
worker is shared and must survive), with the shortest heartbeat Prefect allows (30 s) and
1.5 missed intervals, so the crash is detected about 45 s after the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from support.example import ExampleBuild, copy_example
from support.prefect_server import (
    TELEMETRY_OFF,
    PrefectServer,
    PrefectWorker,
    descendants,
    prefect_executable,
    stop_process,
)
from support.rescue_repo import config, make_repo
from support.webhook import serve_hook

from rescue_runner import audit
from rescue_runner.adapters import prefect_api

pytestmark = pytest.mark.slow

POOL, QUEUE, DEPLOYMENT = "rescue-deadrun", "dbt-deadrun", "rescue_deadrun"
RID = "2026-12-07-dead-worker"
HEARTBEAT, MISSED = 30, 1.5
CRASH_BOUND = HEARTBEAT * MISSED + 40  # the automation's window, its 5 s evaluation, slack for a busy box


def _wait(what: str, check, timeout: float, poll: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout:g} s")


def test_worker_and_flow_process_killed_mid_batch_end_crashed_freed_and_announced(
        prefect_server: PrefectServer, example_build: ExampleBuild, tmp_path: Path) -> None:
    lake = copy_example(example_build, tmp_path / "lake" / "example")
    cfg = config(storage=tmp_path / "runs", deployment=DEPLOYMENT, work_pool=POOL, work_queue=QUEUE,
                 queue_concurrency=2, reserve_slots=0)
    cfg["liveness"] = {"heartbeat_seconds": HEARTBEAT, "missed_heartbeats": MISSED}
    cfg["notifications"] = {"webhook_url_env": "RESCUE_TEST_WEBHOOK", "on": ["needs_operator"]}
    request = {"version": 1, "reason": "stg_orders lost rows in the outage; rebuild it",
               "requested_by": "ana", "ticket": "DATA-1", "select": "stg_orders"}
    with serve_hook() as hook:
        repo = make_repo(tmp_path / "repo", lake.project_dir, cfg, requests=[(RID, request)],
                         env={**prefect_server.env, "RESCUE_TEST_WEBHOOK": hook.url})
        out = repo.rescue("deploy", "--env", f"LAKEHOUSE_DB={lake.db_path}",
                          *[x for k, v in TELEMETRY_OFF.items() for x in ("--env", f"{k}={v}")])
        assert out.returncode == 0, out.stderr
        assert "automation" in out.stdout, out.stdout
        full = f"transform_and_catalog/{DEPLOYMENT}"
        dep = prefect_api.read_deployment(prefect_server.api_url, full)
        auto = prefect_api.read_crash_automation(prefect_server.api_url, full)
        assert auto is not None and auto.enabled
        assert f"prefect.deployment.{dep.id}" in str(auto.trigger.match_related)

        worker = _start_worker(prefect_server, tmp_path)
        try:
            first = repo.rescue("apply")
            assert first.returncode == 0, first.stdout + first.stderr
            rec = audit.derive(RID, [e for e in repo.audit_events() if e.request_id == RID]).in_flight
            assert rec is not None and rec.flow_run_id, first.stdout
            run_id = rec.flow_run_id
            _wait("the run RUNNING", lambda: prefect_api.read_flow_run(
                prefect_server.api_url, run_id).state_type == "RUNNING", 90, poll=0.2)
            victims = [worker.pid, *descendants(worker.pid)]
            assert len(victims) >= 2, "the flow-run process was not found below the worker"
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            worker.wait(timeout=10)

            crashed = _wait("CRASHED by the heartbeat automation", lambda: (
                (info := prefect_api.read_flow_run(prefect_server.api_url, run_id)).state_type == "CRASHED"
                and info), CRASH_BOUND, poll=1.0)
            took = time.monotonic() - killed
            assert "heartbeat" in (crashed.state_message or ""), crashed.state_message
            print(f"run {run_id} CRASHED {took:.0f} s after the kill")
            busy = _busy(prefect_server.api_url)
            assert busy == 0, f"{busy} run(s) still hold a slot of {POOL}/{QUEUE}"

            second = repo.rescue("apply")
            assert second.returncode == 1, second.stdout + second.stderr  # a request needs an operator
            state = audit.derive(RID, [e for e in repo.audit_events() if e.request_id == RID])
            assert state.outcome == audit.NEEDS_OPERATOR
            assert run_id in (state.reason or "")
            assert state.batches[1].state == audit.B_CRASHED
            _wait("the alert", lambda: hook.received, 10)
            alert = hook.received[0]
            assert "needs an operator" in alert["text"] and run_id in alert["text"], alert["text"]
            status = repo.rescue("status", RID)
            assert "needs_operator" in status.stdout and run_id in status.stdout
            submitted = [e for e in repo.audit_events() if e.type == audit.BATCH_SUBMITTED]
            assert len(str(submitted[0].fields["lock"])) == 40  # the fencing token: the lock commit

            # The operator checked the warehouse and closes it for good (an id prefix is enough).
            closed = repo.rescue("close", RID[:12], "--by", "ana", "--reason", "rebuilt stg_orders by hand")
            assert closed.returncode == 0 and f"{RID}: closed by ana" in closed.stdout, closed.stderr
            trail = [e for e in repo.audit_events() if e.request_id == RID]
            assert audit.derive(RID, trail).outcome == "closed"
            again = repo.rescue("retry", RID, "--by", "ana", "--reason", "try it once more", check=False)
            assert again.returncode == 2 and "only failed or needs_operator" in again.stderr
        finally:
            if worker.poll() is None:
                stop_process(worker)


def _start_worker(server: PrefectServer, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**server.env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    log = (tmp_path / "worker.log").open("wb")
    name = f"deadrun-worker-{os.getpid()}"
    proc = subprocess.Popen([*prefect_executable(), "worker", "start", "--pool", POOL, "--work-queue", QUEUE,
                             "--type", "process", "--name", name], env=env, cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def online() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "worker.log").read_text()[-3000:])
        resp = httpx.post(f"{server.api_url}/work_pools/{POOL}/workers/filter", json={}, timeout=2)
        return resp.status_code == 200 and any(w.get("name") == name for w in resp.json())

    _wait("own worker online", online, 60)
    return proc


def _busy(api_url: str) -> int:
    snap = prefect_api.contention_snapshot(api_url, work_pool=POOL, work_queue=QUEUE, lookahead_minutes=0)
    return snap.queue_busy


SLOW_MODEL = """
def model(dbt, session):
    import time

    time.sleep(300)  # long enough to be cancelled while running
    return session.sql("select 1 as id")
"""


def test_cancel_stops_a_running_flow_run_and_records_it(
        prefect_server: PrefectServer, prefect_worker: PrefectWorker, example_build: ExampleBuild,
        tmp_path: Path) -> None:
    lake = copy_example(example_build, tmp_path / "lake" / "example")
    (lake.project_dir / "models" / "slow_sleep.py").write_text(SLOW_MODEL)
    rid = "2026-12-07-cancel-me"
    request = {"version": 1, "reason": "a long rebuild that turns out to be a mistake", "requested_by": "ana",
               "ticket": "DATA-2", "select": "slow_sleep"}
    repo = make_repo(tmp_path / "repo", lake.project_dir, config(storage=tmp_path / "runs",
                     deployment="rescue_cancel"), env=prefect_server.env, requests=[(rid, request)])
    repo.deploy(prefect_server.api_url, lake.db_path)
    first = repo.rescue("apply")
    assert first.returncode == 0, first.stdout + first.stderr
    rec = audit.derive(rid, [e for e in repo.audit_events() if e.request_id == rid]).in_flight
    assert rec is not None and rec.flow_run_id
    run_id = rec.flow_run_id
    _wait("the run RUNNING", lambda: prefect_api.read_flow_run(
        prefect_server.api_url, run_id).state_type == "RUNNING", 90, poll=0.5)

    out = repo.rescue("cancel", rid[:14], "--by", "ana", "--reason", "wrong selection, see PR 812")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{rid}: cancelled by ana (flow run {run_id}: cancelled)" in out.stdout, out.stdout
    assert prefect_api.read_flow_run(prefect_server.api_url, run_id).state_type == "CANCELLED"
    state = audit.derive(rid, [e for e in repo.audit_events() if e.request_id == rid])
    assert state.outcome == audit.CANCELLED and state.batches[1].state == audit.B_CANCELLED
    assert "cancelled by ana: wrong selection" in (state.reason or "")
    assert audit.check_consistency(repo.audit_events()) == []
    assert "nothing to do" in repo.rescue("apply").stdout
