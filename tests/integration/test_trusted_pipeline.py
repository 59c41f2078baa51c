"""The audit trail is a record, not an instruction, on real parts: a bare git remote, the session's
Prefect server and worker, the bundled DuckDB project. Each request waits for a night window, then:

* a forged ``request_validated`` event (batches edited, fingerprint kept) stops it needs_operator,
  naming the event, with nothing submitted;
* a merge that touches nothing it builds does not disturb it: it runs when the window opens;
* a merge that adds a model to its selection is drift, named; ``retry --accept-plan`` runs it;
* a finished request's id re-added with other content is never run silently.
"""

from __future__ import annotations

import json
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

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
WINDOW = {"daily": {"start": "01:00", "end": "05:00"}, "timezone": "UTC"}


def request(select: str, reason: str) -> dict[str, Any]:
    return {"version": 1, "reason": reason, "requested_by": "ops", "select": select, "window": WINDOW}


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tick(repo: RescueRepo, now: datetime) -> str:
    proc = repo.rescue("apply", env={"RESCUE_NOW": iso(now)})
    return proc.stdout + proc.stderr


def trail(repo: RescueRepo, rid: str) -> list[audit.AuditEvent]:
    return audit.order(e for e in repo.audit_events() if e.request_id == rid)


def runs_of(server: PrefectServer, rid: str) -> list[prefect_api.FlowRunInfo]:
    return list(prefect_api.read_flow_runs_by_tag(server.api_url, execution.run_tag(rid)))


def run_to_end(repo: RescueRepo, server: PrefectServer, rid: str, now: datetime) -> str:
    out = ""
    for _ in range(6):
        out += tick(repo, now)
        state = audit.derive(rid, trail(repo, rid))
        if state.terminal:
            return out
        if state.in_flight is not None:
            prefect_api.wait_for_flow_run(server.api_url, state.in_flight.flow_run_id or "", timeout=240,
                                          poll_seconds=0.5)
        now += timedelta(minutes=1)
    raise AssertionError(out)


def merge_files(repo: RescueRepo, files: dict[str, str], message: str) -> None:
    """A merged change to the protected branch (the cron runner's checkout follows it)."""
    for rel, text in files.items():
        path = repo.dev / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(repo.dev, "add", rel)
    git(repo.dev, "commit", "-q", "-m", message)
    git(repo.dev, "push", "-q", "origin", "main")
    git(repo.runner, "pull", "-q", "--ff-only", "origin", "main")


@pytest.fixture(scope="module")
def lake(example_build: ExampleBuild, tmp_path_factory: pytest.TempPathFactory) -> ExampleBuild:
    return copy_example(example_build, tmp_path_factory.mktemp("trusted-lake") / "example")


@pytest.fixture(scope="module")
def repo(prefect_server: PrefectServer, prefect_worker: PrefectWorker, lake: ExampleBuild,
         tmp_path_factory: pytest.TempPathFactory) -> RescueRepo:
    root = tmp_path_factory.mktemp("trusted")
    repo = make_repo(root, lake.project_dir, config(storage=root / "runs", deployment="rescue_trusted"),
                     env=prefect_server.env)
    repo.deploy(prefect_server.api_url, lake.db_path)
    return repo


def test_a_forged_validated_event_stops_the_request_with_nothing_submitted(
        repo: RescueRepo, prefect_server: PrefectServer, tmp_path: Path) -> None:
    rid = "2026-11-24-forged"
    repo.merge_request(rid, request("stg_payments", "payments staging view is stale since the outage"))
    assert f"{rid}: waiting (window_closed)" in tick(repo, NOON)
    # Someone with push rights edits the approved plan on the audit branch, fingerprint kept.
    forger = repo.clone("forger")
    git(forger, "checkout", "-q", "rescue-audit")
    (first,) = [e for e in trail(repo, rid) if e.type == audit.REQUEST_VALIDATED]
    data = json.loads((forger / first.path).read_text())
    data["fields"]["batches"] = [{"index": 1, "full_refresh": True, "heavy": False, "estimated_seconds": 1.0,
                                  "models": [f"model.lakehouse.{m}" for m in
                                             ("stg_payments", "stg_orders", "int_orders", "mart_revenue")]}]
    (forger / first.path).write_text(json.dumps(data, indent=2) + "\n")
    git(forger, "commit", "-q", "-am", "nothing to see here")
    git(forger, "push", "-q", "origin", "rescue-audit")

    out = tick(repo, NIGHT)
    assert f"{rid}: needs_operator: the audit trail cannot be trusted" in out, out
    assert first.path in out and "hash chain broken" in out
    assert runs_of(prefect_server, rid) == []
    assert [e.type for e in trail(repo, rid)][-1] == audit.REQUEST_FINISHED
    assert "hash chain broken" in repo.rescue("status", rid).stdout


def test_an_unrelated_merge_does_not_disturb_a_waiting_request(
        repo: RescueRepo, lake: ExampleBuild, prefect_server: PrefectServer) -> None:
    rid = "2026-11-24-waits-for-night"
    repo.merge_request(rid, request("stg_customers", "customer staging view lost rows in the outage"))
    assert f"{rid}: waiting (window_closed)" in tick(repo, NOON)
    mart = repo.dev / "lakehouse" / "models" / "marts" / "mart_revenue.sql"
    merge_files(repo, {"lakehouse/models/marts/mart_revenue.sql": mart.read_text() + "\n-- reviewed\n",
                       "README.md": "unrelated docs\n"}, "unrelated work on main")
    out = run_to_end(repo, prefect_server, rid, NIGHT)
    assert f"{rid}: succeeded" in out, out
    (run,) = runs_of(prefect_server, rid)
    assert run.state_type == "COMPLETED"
    validated = [e for e in trail(repo, rid) if e.type == audit.REQUEST_VALIDATED]
    assert len(validated) == 1  # validated once, at noon; the night pass found the same plan


def test_a_merge_that_changes_the_selection_is_drift_named_then_accept_plan_runs_it(
        repo: RescueRepo, lake: ExampleBuild, prefect_server: PrefectServer) -> None:
    rid = "2026-11-24-orders-downstream"
    repo.merge_request(rid, request("stg_orders+", "orders staging logic fixed; rebuild downstream models"))
    assert f"{rid}: waiting (window_closed)" in tick(repo, NOON)
    merge_files(repo, {"lakehouse/models/marts/mart_order_audit.sql":
                       "select order_id, status from {{ ref('stg_orders') }}\n"}, "a new mart on stg_orders")
    out = tick(repo, NIGHT)
    assert f"{rid}: needs_operator: plan drift: models added: mart_order_audit" in out, out
    assert "--accept-plan" in out and runs_of(prefect_server, rid) == []

    retry = repo.rescue("retry", rid, "--accept-plan", "--by", "ops", "--reason", "new mart reviewed in PR 7")
    assert retry.returncode == 0 and "the plan at the next pass is approved" in retry.stdout
    out = run_to_end(repo, prefect_server, rid, NIGHT + timedelta(minutes=10))
    assert f"{rid}: succeeded" in out, out
    events = trail(repo, rid)
    validated = [e for e in events if e.type == audit.REQUEST_VALIDATED]
    assert len(validated) == 2
    approved = {m for b in validated[1].fields["batches"] for m in b["models"]}
    assert "model.lakehouse.mart_order_audit" in approved
    retried = [e for e in events if e.type == audit.OPERATOR_RETRY]
    assert retried[0].fields["accept_plan"] is True and retried[0].fields["by"] == "ops"
    con = duckdb.connect(str(lake.db_path), read_only=True)
    try:
        assert con.execute("select count(*) from mart_order_audit").fetchone()[0] > 0
    finally:
        con.close()
    assert audit.chain_problems(events) == []


def test_a_finished_id_re_added_with_other_content_is_never_silent(
        repo: RescueRepo, prefect_server: PrefectServer) -> None:
    rid = "2026-11-24-waits-for-night"  # succeeded above
    repo.merge_request(rid, request("stg_orders", "same id, other selection: must not pass silently"))
    proc = repo.rescue("apply", env={"RESCUE_NOW": iso(NIGHT + timedelta(hours=1))})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"request id {rid} already ended succeeded" in proc.stdout and "choose a new id" in proc.stdout
    assert len(runs_of(prefect_server, rid)) == 1
    # validate in a clone that has the audit branch: a located finding.
    git(repo.runner, "fetch", "-q", "origin", "rescue-audit:refs/remotes/origin/rescue-audit")
    git(repo.runner, "pull", "-q", "--ff-only", "origin", "main")
    out = repo.rescue("validate", f"rescues/{rid}.yaml", "--format", "text")
    assert out.returncode == 1 and f"rescues/{rid}.yaml:1: error RR014" in out.stdout, out.stdout
