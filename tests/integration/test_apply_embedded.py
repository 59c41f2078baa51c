"""``rescue apply`` on embedded defaults (no PREFECT_API_URL: batches run in-process), killed after a
batch ran but before it was recorded: the next runner finds the run in the local run record
(.rescue/runs-local) and adopts it; the batch runs once. A record a killed batch left RUNNING is
adopted as an orphan (outcome unknown), never rerun. The demo script shows the happy path on the
same defaults."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.example import ExampleBuild
from support.prefect_server import base_env
from support.rescue_repo import RescueRepo, config, make_repo, rescue_executable

from rescue_runner import audit, faults
from rescue_runner.adapters import local_runs

pytestmark = pytest.mark.slow

RID = "2026-11-23-embedded"
REQUEST = {"version": 1, "reason": "rebuild the orders staging view in-process", "requested_by": "ops",
           "select": "stg_orders"}


def killed_apply(repo: RescueRepo, point: str, log: Path) -> int:
    """``rescue apply`` killed at ``point`` (in its own process group, stopped whole here)."""
    with log.open("w") as out:
        proc = subprocess.Popen([*rescue_executable(), "apply"], cwd=repo.runner,
                                env={**repo.env, faults.ENV: point}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        code = proc.wait(timeout=300)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
            time.sleep(2)
    return code


def test_embedded_run_of_a_killed_runner_is_adopted_not_rerun(example_copy: ExampleBuild,
                                                               tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    env = base_env({"LAKEHOUSE_DB": str(example_copy.db_path), "DBT_QUIET": "true"})
    repo = make_repo(tmp_path / "git", example_copy.project_dir, config(storage=runs), env=env)
    repo.merge_request(RID, REQUEST)

    log = tmp_path / "killed.log"
    assert killed_apply(repo, "after_submit_before_audit", log) == -signal.SIGKILL, log.read_text()[-3000:]
    assert [e.type for e in repo.audit_events()] == [audit.REQUEST_VALIDATED]
    (ran,) = [p.name for p in runs.iterdir()]  # the batch did run, in the killed process
    assert '"status": "success"' in (runs / ran / "summary.json").read_text()

    again = repo.rescue("apply")
    assert "lock: taken over: runner" in again.stdout and "is gone" in again.stdout
    assert f"{RID}: batch 1/1: adopted flow run {ran} (completed)" in again.stdout
    assert f"{RID}: succeeded: 1 batch(es) completed" in again.stdout
    assert [p.name for p in runs.iterdir()] == [ran]  # not run a second time
    trail = audit.order(repo.audit_events())
    assert [e.type for e in trail] == [audit.REQUEST_VALIDATED, audit.BATCH_SUBMITTED, audit.BATCH_FINISHED,
                                       audit.REQUEST_FINISHED]
    assert trail[1].fields["adopted"] is True and trail[1].fields["mode"] == "embedded"
    assert trail[2].fields["state"] == "completed" and trail[2].fields["counts"].get("success") == 1


def test_a_batch_killed_while_it_runs_is_adopted_as_unknown_never_rerun(example_copy: ExampleBuild,
                                                                        tmp_path: Path) -> None:
    """The runner is killed while its batch runs: the local run record says RUNNING (written before
    the batch started), the next runner adopts that run with an unknown outcome and builds nothing."""
    runs = tmp_path / "runs"
    env = base_env({"LAKEHOUSE_DB": str(example_copy.db_path), "DBT_QUIET": "true"})
    repo = make_repo(tmp_path / "git", example_copy.project_dir, config(storage=runs), env=env)
    repo.merge_request(RID, REQUEST)
    records = repo.runner / ".rescue" / "runs-local"

    with (tmp_path / "killed.log").open("w") as out:
        proc = subprocess.Popen([*rescue_executable(), "apply"], cwd=repo.runner, env=repo.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not list(records.glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    (record,) = records.glob("*.json")
    run_id = record.stem
    left = local_runs.record(records, run_id)
    assert left is not None and left["state_type"] == "RUNNING" and left["name"] == f"{RID}-batch-1"

    again = repo.rescue("apply")
    assert f"{RID}: batch 1/1: adopted flow run {run_id}" in again.stdout, again.stdout + again.stderr
    assert "the runner died during embedded flow run" in again.stdout
    assert [p.name for p in records.glob("*.json")] == [record.name]  # no second run of the batch
    assert not runs.exists() or [p.name for p in runs.iterdir()] in ([], [run_id])
    trail = audit.order(repo.audit_events())
    finished = [e for e in trail if e.type == audit.BATCH_FINISHED]
    assert len(finished) == 1 and finished[0].fields["state"] == audit.B_UNKNOWN
    assert not [e for e in trail if e.type == audit.BATCH_SUBMITTED and not e.fields.get("adopted")]
