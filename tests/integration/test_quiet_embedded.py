"""Quiet by default: embedded `rescue apply --wait` on the example prints rescue-runner's own lines
only; dbt's output and the batch's log lines (and what native libraries print at exit) are in the
log file the output names. No Prefect in embedded mode: the run is in the local run record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.example import ExampleBuild
from support.prefect_server import base_env
from support.rescue_repo import config, make_repo

pytestmark = pytest.mark.slow

RID = "2026-12-07-quiet"
REQUEST = {"version": 1, "reason": "rebuild the orders staging view quietly", "requested_by": "ops",
           "select": "stg_orders"}
FOREIGN = re.compile(r"Running with dbt|Registered adapter|Found \d+ models|Concurrency:|Finished running|"
                     r"Completed successfully|Done\. PASS|\bINFO\b|\bWARNING\b|prefect|nanobind|leaked|"
                     r"Traceback|sqlite3", re.IGNORECASE)


def test_embedded_apply_wait_prints_only_its_own_lines_and_names_the_logs(example_copy: ExampleBuild,
                                                                           tmp_path: Path) -> None:
    env = base_env({"LAKEHOUSE_DB": str(example_copy.db_path)})
    for name in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED", "DBT_SEND_ANONYMOUS_USAGE_STATS"):
        env.pop(name)  # the tool switches telemetry off by itself
    repo = make_repo(tmp_path / "git", example_copy.project_dir, config(storage=tmp_path / "runs"), env=env)
    repo.merge_request(RID, REQUEST)

    proc = repo.rescue("apply", "--wait", "--poll", "1", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    ours = (f"{RID}:", "dbt output: ")
    foreign = [line for line in lines if FOREIGN.search(line) and not line.startswith(ours)]
    assert foreign == [], "\n".join(lines)
    assert f"{RID}: succeeded: 1 batch(es) completed" in proc.stdout
    (named,) = [line for line in lines if line.startswith("dbt output: ")]
    log = repo.runner / named.split(": ", 1)[1].split(";", 1)[0]
    text = log.read_text()
    assert "Running with dbt" in text  # dbt's output was kept, not thrown away
    assert "| INFO    | artifacts: " in text  # the batch's own log lines too
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert (run_dir / "dbt.log").is_file() and "runs/<flow run id>/" in named
