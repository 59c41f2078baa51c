"""Two ``rescue apply`` processes started together, again and again, against one remote and one server.

Each round merges a one-batch request, starts two runners at once (alternately in the same
clone, like overlapping cron ticks on one machine, and in two clones, like two machines) and
waits for both. Exactly one may act; the other says "busy". Checked at the end: every batch was
submitted exactly once (one flow run per request in Prefect, one ``batch_submitted`` in the
trail), and the audit trail has no lost or duplicated event (seq 1..n per request, exactly the
expected events, one commit per event on the branch).

The submissions are real (the session's Prefect server, the real deployment and contention
checks); the runs go to a queue no worker polls, and the test marks each one COMPLETED
through the API as a worker would. Selections resolve against the example's manifest.json
(``dbt.manifest``) instead of a parse per round. Executing 50 dbt runs would only slow the test down:
execution is covered by test_apply_e2e and test_apply_crash. ``RESCUE_RACE_ROUNDS`` sets
the number of rounds (default 20; the suite must fit CI, a drill can ask for more).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from support.example import ExampleBuild
from support.prefect_server import PrefectServer, PrefectWorker
from support.rescue_repo import RescueRepo, config, git, make_repo

from rescue_runner import audit, execution
from rescue_runner.adapters import prefect_api
from rescue_runner.config import load_config

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("RESCUE_RACE_ROUNDS", "20"))
EXPECTED = [audit.REQUEST_VALIDATED, audit.BATCH_SUBMITTED, audit.BATCH_FINISHED, audit.REQUEST_FINISHED]


def request(i: int) -> dict[str, Any]:
    model = ("stg_customers", "stg_orders", "stg_payments")[i % 3]
    return {"version": 1, "reason": f"race round {i}: rebuild {model}", "requested_by": "race",
            "select": model}


@contextlib.contextmanager
def client(api_url: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        yield c


@pytest.fixture(scope="module")
def repo(prefect_server: PrefectServer, prefect_worker: PrefectWorker, example_build: ExampleBuild,
         tmp_path_factory: pytest.TempPathFactory) -> RescueRepo:
    root = tmp_path_factory.mktemp("apply-race")
    # The "race" queue of the worker's pool: the pool has a worker online (contention says go),
    # but it polls only "dbt", so these runs wait for the test to finish them.
    cfg = config(storage=root / "runs", deployment="rescue_race", work_queue="race", queue_concurrency=100,
                 reserve_slots=0)
    # Selections resolve against a manifest artifact (as in production with dbt.manifest): the
    # winner of a round then spends its time on the race, not on parsing the project.
    cfg["dbt"]["manifest"] = str(example_build.manifest_path)
    repo = make_repo(root / "git", example_build.project_dir, cfg, env=prefect_server.env)
    execution.deploy(load_config(repo.runner / "rescue.yaml"), api_url=prefect_server.api_url)
    return repo


def test_two_runners_started_together_never_submit_twice_nor_lose_an_event(
        repo: RescueRepo, prefect_server: PrefectServer) -> None:
    from prefect.states import Completed

    second = repo.clone("second-machine")
    outcomes: Counter[str] = Counter()
    t0 = time.monotonic()
    for i in range(ROUNDS):
        rid = f"2026-11-23-race-{i:03d}"
        repo.merge_request(rid, request(i))
        where = repo.runner if i % 2 == 0 else second
        procs = [repo.start("apply"), repo.start("apply", cwd=where)]
        outs = [p.communicate(timeout=180) for p in procs]
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, f"round {i}: {out}\n{err[-3000:]}"
        text = "".join(out for out, _ in outs)
        assert text.count(f"{rid}: batch 1/1 submitted") == 1, f"round {i}:\n{text}"
        outcomes[" + ".join(sorted(_kind(out) for out, _ in outs))] += 1
        # Play the worker: the run finishes; the next round's winner records it.
        for run in prefect_api.read_flow_runs_by_tag(prefect_server.api_url, execution.run_tag(rid)):
            with client(prefect_server.api_url) as c:
                c.set_flow_run_state(run.id, Completed(), force=True)
    assert repo.rescue("apply").stdout.endswith("succeeded: 1 batch(es) completed\n")
    elapsed = time.monotonic() - t0
    print(f"\nrace: {ROUNDS} rounds in {elapsed:.0f} s; first lines: {dict(outcomes)}")

    events = repo.audit_events()
    assert audit.check_consistency(events) == []
    by_request = audit.group(events)
    assert len(by_request) == ROUNDS
    for rid, evs in by_request.items():
        assert [e.type for e in audit.order(evs)] == EXPECTED, rid
        runs = prefect_api.read_flow_runs_by_tag(prefect_server.api_url, execution.run_tag(rid))
        assert len(runs) == 1, (rid, runs)
        submitted = next(e for e in evs if e.type == audit.BATCH_SUBMITTED)
        assert submitted.fields["flow_run_id"] == runs[0].id and not submitted.fields["adopted"]
    assert int(git(repo.origin, "rev-list", "--count", "rescue-audit")) == len(events) == 4 * ROUNDS
    assert git(repo.origin, "for-each-ref", "refs/rescue-locks/") == ""
    # Both processes really raced: most of the time the loser found the lock taken.
    assert outcomes["acted + busy"] >= ROUNDS // 2, outcomes


def _kind(out: str) -> str:
    return "busy" if out.startswith("busy:") else "nothing" if out.startswith("nothing") else "acted"
