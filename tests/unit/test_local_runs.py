"""The local run record of embedded mode: one JSON file per run, written atomically."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rescue_runner import execution
from rescue_runner.adapters import local_runs, prefect_artifacts
from rescue_runner.config import config_from_data
from rescue_runner.errors import RescueError
from rescue_runner.executors import EmbeddedExecutor
from rescue_runner.redact import MASK, forget_secrets, register_secret

SECRET = "glpat-LocalRunSecret0042"


@pytest.fixture(autouse=True)
def _no_secrets() -> Iterator[None]:
    yield
    forget_secrets()


def _start(home: Path, name: str = "req-batch-1", tags: tuple[str, ...] = ("rescue", "rescue:req")) -> str:
    return local_runs.start(home, name=name, tags=tags, parameters={"dbt_repo_commit": "a" * 40},
                            idempotency_key="k-" + name)


def test_a_run_is_recorded_running_before_it_starts_then_final(tmp_path: Path) -> None:
    run_id = _start(tmp_path)
    rec = local_runs.record(tmp_path, run_id)
    assert rec is not None and rec["state_type"] == "RUNNING" and rec["ended"] is None
    assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
    assert rec["idempotency_key"] == "k-req-batch-1" and rec["tags"] == ["rescue", "rescue:req"]
    running = local_runs.read_run(tmp_path, run_id)
    assert running is not None and not running.is_final and running.start_time is not None

    register_secret(SECRET)
    local_runs.finish(tmp_path, run_id, local_runs.FAILED, f"DbtBuildFailed: token {SECRET} refused")
    done = local_runs.read_run(tmp_path, run_id)
    assert done is not None and done.is_final and done.state_type == "FAILED" and done.state_name == "Failed"
    assert done.state_message == f"DbtBuildFailed: token {MASK} refused"
    assert SECRET not in (tmp_path / f"{run_id}.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == [f"{run_id}.json"]  # no temporary file left


def test_artifacts_go_into_the_record(tmp_path: Path) -> None:
    run_id = _start(tmp_path)
    assert prefect_artifacts.attach_markdown(run_id, "# context", key="rescue-req", description="ctx",
                                             local_home=tmp_path) is None
    assert prefect_artifacts.attach_markdown(run_id, "# result", key="rescue-req-result", description="res",
                                             local_home=tmp_path) is None
    arts = prefect_artifacts.read_markdown(run_id, local_home=tmp_path)
    assert [(a.key, a.type, a.data, a.flow_run_id) for a in arts] == [
        ("rescue-req", "markdown", "# context", run_id),
        ("rescue-req-result", "markdown", "# result", run_id)]
    missing = "00000000-0000-4000-8000-000000000000"
    failed = prefect_artifacts.attach_markdown(missing, "# x", key=None, description="x", local_home=tmp_path)
    assert failed is not None and "RescueError" in failed  # reported, never raised
    assert prefect_artifacts.read_markdown(missing, local_home=tmp_path) == ()


def test_find_runs_by_tag_oldest_first_and_unknown_ids(tmp_path: Path) -> None:
    first, second = _start(tmp_path, "req-batch-1"), _start(tmp_path, "req-batch-2")
    _start(tmp_path, "other-batch-1", tags=("rescue", "rescue:other"))
    assert [r.id for r in local_runs.find_runs(tmp_path, "rescue:req")] == [first, second]
    assert local_runs.find_runs(tmp_path / "absent", "rescue:req") == ()
    assert local_runs.read_run(tmp_path, "00000000-0000-4000-8000-000000000000") is None
    assert local_runs.read_run(tmp_path, "../../etc/passwd") is None  # not a run id: no such run
    with pytest.raises(RescueError, match="not a run id"):
        local_runs.finish(tmp_path, "../x", local_runs.COMPLETED)


def test_a_failed_write_keeps_the_previous_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _start(tmp_path)
    before = (tmp_path / f"{run_id}.json").read_text()

    def no_rename(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(local_runs.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk full"):
        local_runs.finish(tmp_path, run_id, local_runs.COMPLETED)
    assert (tmp_path / f"{run_id}.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [f"{run_id}.json"]


def test_a_corrupt_record_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    """Skipping it could hide a batch's run and let the batch run twice: it stops the lookup instead."""
    run_id = _start(tmp_path)
    (tmp_path / ".tmp-abc.json").write_text("{")  # a killed writer's leftover: not a record
    assert [r.id for r in local_runs.find_runs(tmp_path, "rescue:req")] == [run_id]
    path = tmp_path / f"{run_id}.json"
    path.write_text('{"id": "')
    for call in (lambda: local_runs.find_runs(tmp_path, "rescue:req"),
                 lambda: local_runs.read_run(tmp_path, run_id)):
        with pytest.raises(RescueError, match="unreadable local run record") as info:
            call()
        assert str(path) in str(info.value) and info.value.hint
    path.write_text(json.dumps(["not", "a", "run"]))
    with pytest.raises(RescueError, match="not a local run record"):
        local_runs.read_run(tmp_path, run_id)


def test_the_embedded_executor_reads_a_running_record_as_an_orphan(tmp_path: Path) -> None:
    """A RUNNING record read by a runner is a dead runner's run: final for the runner, outcome unknown."""
    import subprocess

    from rescue_runner.audit import BatchRecord

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    cfg = config_from_data(tmp_path, {})
    home = execution.embedded_runs_home(cfg)
    run_id = _start(home)
    executor = EmbeddedExecutor(cfg)

    def read(flow_run_id: str) -> Any:
        return executor.run_state(None, BatchRecord(1, 1, "submitted", flow_run_id))  # type: ignore[arg-type]

    view = read(run_id)
    assert view is not None and view.orphaned and view.final and view.state == "RUNNING"
    assert view.commit == "a" * 40 and view.mode == "embedded"
    local_runs.finish(home, run_id, local_runs.COMPLETED)
    view = read(run_id)
    assert view is not None and not view.orphaned and view.state == "COMPLETED"
    gone = read("00000000-0000-4000-8000-000000000000")
    assert gone is not None and gone.state == "MISSING"
