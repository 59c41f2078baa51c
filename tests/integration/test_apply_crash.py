"""SIGKILL at every fault point, then restart: the request still finishes, one flow run per batch.

Real parts: a bare git remote, the session's Prefect server and worker, the example project.
One two-batch request; each ``rescue apply --wait`` process is killed (``RESCUE_FAULT``) at
the next fault point of the request's life, and the next process starts where it died (the
dead runner's lock is taken over at once: its process is gone). Every point in
``faults.POINTS`` is hit; a last clean run finds nothing to do.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support.example import ExampleBuild, copy_example
from support.prefect_server import TELEMETRY_OFF, PrefectServer, PrefectWorker
from support.rescue_repo import RescueRepo, config, git, make_repo

from rescue_runner import audit, execution, faults
from rescue_runner.adapters import prefect_api
from rescue_runner.config import load_config

pytestmark = pytest.mark.slow

RID = "2026-11-23-crash-drill"
REQUEST = {"version": 1, "reason": "crash drill: rebuild two staging views, one per batch",
           "requested_by": "ops", "select": ["stg_customers", "stg_orders"], "batches": {"max_models": 1}}
# (fault point, its n-th hit in that process): the order in which a request's life reaches them.
KILLS = [
    ("after_lock", 1),
    ("after_validate_before_audit", 1),
    ("before_audit_push", 1),  # request_validated committed locally, not pushed
    ("after_audit_push", 1),  # request_validated pushed
    ("before_submit", 1),  # batch 1
    ("after_submit_before_audit", 1),  # batch 1 runs in Prefect, nobody recorded it
    ("after_run_final_before_audit", 1),  # batch 1 (adopted) finished, not recorded
    ("after_submit_before_audit", 1),  # batch 2
    ("before_request_finished", 1),
    ("before_lock_release", 1),
]


@pytest.fixture(scope="module")
def repo(prefect_server: PrefectServer, prefect_worker: PrefectWorker, example_build: ExampleBuild,
         tmp_path_factory: pytest.TempPathFactory) -> RescueRepo:
    root = tmp_path_factory.mktemp("apply-crash")
    lake = copy_example(example_build, root / "lake")
    repo = make_repo(root / "git", lake.project_dir, config(storage=root / "runs", deployment="rescue_crash"),
                     env=prefect_server.env)
    execution.deploy(load_config(repo.runner / "rescue.yaml"), api_url=prefect_server.api_url,
                     job_variables={"env": {"LAKEHOUSE_DB": str(lake.db_path), **TELEMETRY_OFF}})
    return repo


def test_every_fault_point_is_in_the_drill() -> None:
    assert {point for point, _ in KILLS} == set(faults.POINTS)


def test_killed_at_every_fault_point_the_request_still_finishes_with_one_run_per_batch(
        repo: RescueRepo, prefect_server: PrefectServer) -> None:
    repo.merge_request(RID, REQUEST)
    tag = execution.run_tag(RID)
    for point, nth in KILLS:
        proc = repo.rescue("apply", "--wait", "--poll", "0.5", "--timeout", "240",
                           env={faults.ENV: f"{point}:{nth}"}, check=False)
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stdout, proc.stderr[-2000:])
        trail = [e for e in repo.audit_events() if e.request_id == RID]
        assert audit.check_consistency(trail) == [], point
        runs = prefect_api.read_flow_runs_by_tag(prefect_server.api_url, tag)
        assert len(runs) <= 2 and len({r.name for r in runs}) == len(runs), (point, runs)
        if point == "after_submit_before_audit":
            recorded = {e.fields["flow_run_id"] for e in trail if e.type == audit.BATCH_SUBMITTED}
            assert {r.id for r in runs} - recorded, "the killed runner's run should be unrecorded here"

    final = repo.rescue("apply", "--wait", "--poll", "0.5")
    assert final.stdout == "nothing to do: no approved request is pending\n", final.stdout

    done = sorted(prefect_api.read_flow_runs_by_tag(prefect_server.api_url, tag), key=lambda r: r.name)
    assert [(r.name, r.state_type) for r in done] == [(f"{RID}-batch-1", "COMPLETED"),
                                                      (f"{RID}-batch-2", "COMPLETED")]
    trail = audit.order(e for e in repo.audit_events() if e.request_id == RID)
    assert audit.check_consistency(trail) == []
    state = audit.derive(RID, trail)
    assert state.outcome == audit.SUCCEEDED and state.completed == 2
    submitted = [e for e in trail if e.type == audit.BATCH_SUBMITTED]
    assert [(e.fields["batch"], e.fields["flow_run_id"]) for e in submitted] == [(1, done[0].id),
                                                                                 (2, done[1].id)]
    assert [e.fields["adopted"] for e in submitted] == [True, True]  # found by their key, not resubmitted
    assert len({e.runner for e in trail}) >= 5  # the story was told by many (dead) runners
    # The runner killed before releasing left its lock; it is a dead holder's, taken over by the next one.
    assert git(repo.origin, "for-each-ref", "--format=%(refname)", "refs/rescue-locks/").strip() \
        == "refs/rescue-locks/default"
    assert not list(Path(repo.runner).glob(".git/refs/rescue-runner/*"))  # no private push refs left behind
