"""``rescue apply`` on embedded defaults (no PREFECT_API_URL: batches run in-process), killed after a
batch ran but before it was recorded: the next runner finds the run in the local Prefect database
and adopts it; the batch runs once. The demo script shows the happy path on the same defaults."""

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

pytestmark = pytest.mark.slow

RID = "2026-11-23-embedded"
REQUEST = {"version": 1, "reason": "rebuild the orders staging view in-process", "requested_by": "ops",
           "select": "stg_orders"}


def killed_apply(repo: RescueRepo, point: str, log: Path) -> int:
    """``rescue apply`` killed at ``point``. It runs in its own process group: Prefect's temporary
    server, a child of the killed runner, outlives it and is stopped here by its group."""
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
    env = base_env({"LAKEHOUSE_DB": str(example_copy.db_path), "DBT_QUIET": "true",
                    "PREFECT_HOME": str(tmp_path / "prefect-home")})
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
