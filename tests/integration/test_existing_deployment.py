"""Driving the team's own deployment through ``prefect.mapping``, end to end on real parts.

A separately written flow shaped like the article's template (tests/data/article_template:
``dbt_selects={"run": ...}``, a repository URL and branch, a storage path; it clones by
branch and runs ``dbt run --select <string>``) is deployed on the session's Prefect server
and run by its process worker. rescue-runner maps a request onto it, applies it batch by
batch from a bare git remote, and the flow gets exactly each batch's selection; a full
refresh is refused at validate time until the mapping can express it, then reaches dbt.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from support.example import ExampleBuild, copy_example
from support.prefect_server import TELEMETRY_OFF, PrefectServer, PrefectWorker
from support.rescue_repo import config, git, make_repo

from rescue_runner import audit, execution
from rescue_runner.adapters import prefect_api, prefect_artifacts
from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json

pytestmark = pytest.mark.slow

TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "article_template"
FLOW = "article_transform_and_catalog"
DEPLOYMENT = "dbt_rerun_article"
NEW_ORDER_ID = 910001


@contextlib.contextmanager
def _client(api_url: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        yield c


def _deploy_template(api_url: str, env: dict[str, str]) -> str:
    """Deploy the article-shaped flow from its folder (no image, no remote storage)."""
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with _client(api_url) as c, contextlib.suppress(Exception):
        c.create_work_queue(name="dbt", work_pool_name="rescue")
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        template = flow.from_source(source=str(TEMPLATE), entrypoint=f"flow.py:{FLOW}")
        dep_id = template.deploy(name=DEPLOYMENT, work_pool_name="rescue", work_queue_name="dbt",
                                 job_variables={"env": env}, build=False, push=False,
                                 print_next_steps=False)
    return str(dep_id)


def test_apply_drives_the_teams_own_deployment(example_build: ExampleBuild, prefect_server: PrefectServer,
                                               prefect_worker: PrefectWorker,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("existing-deployment")
    lake = copy_example(example_build, root / "example")
    dep_id = _deploy_template(prefect_server.api_url, {"LAKEHOUSE_DB": str(lake.db_path), **TELEMETRY_OFF})
    stored = root / "article-runs"
    mapping = {"selection": "dbt_selects.run", "ref": "dbt_repo_branch",
               "fixed": {"dbt_repo_url": str(root / "repo" / "origin.git"), "dbt_project_path": "lakehouse",
                         "run_results_storage_path": str(stored)}}
    cfg = config(storage=root / "runs", deployment=DEPLOYMENT, flow=FLOW, mapping=mapping)
    repo = make_repo(root / "repo", lake.project_dir, cfg, env=prefect_server.env)

    # The deployment's schema is read, not assumed: a branch-only target that cannot run full refreshes.
    check = repo.rescue("deploy", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "full refresh: no" in check.stdout and "builds a branch through dbt_repo_branch" in check.stdout
    assert repo.rescue("deploy", check=False).returncode == 2  # never overwrites the team's deployment

    con = duckdb.connect(str(lake.db_path))
    try:
        con.execute(f"insert into raw_orders values ({NEW_ORDER_ID}, 14, DATE '2026-12-30', 'completed')")
        con.execute(f"insert into raw_payments values ({NEW_ORDER_ID}, {NEW_ORDER_ID}, 'credit_card', 4200)")
    finally:
        con.close()

    rid = "2026-12-07-orders-via-template"
    repo.merge_request(rid, {"version": 1, "reason": "late orders missing from int_orders; rebuild it",
                             "requested_by": "ana", "select": ["stg_orders", "int_orders"],
                             "batches": {"max_models": 1, "pause_minutes": 0}})
    out = repo.rescue("apply", "--wait", "--poll", "1", "--timeout", "400")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]

    trail = audit.order(e for e in repo.audit_events() if e.request_id == rid)
    assert trail[-1].type == audit.REQUEST_FINISHED and trail[-1].fields["outcome"] == "succeeded", \
        [(e.type, dict(e.fields)) for e in trail]
    validated = trail[0].fields
    assert any(w.startswith("RR220") for w in validated["warnings"]), validated["warnings"]
    graph = graph_from_manifest_dict(load_manifest_json(lake.manifest_path))
    submitted = [e.fields for e in trail if e.type == audit.BATCH_SUBMITTED]
    assert [s["batch"] for s in submitted] == [1, 2]
    for sub, batch in zip(submitted, validated["batches"], strict=True):
        run = prefect_api.read_flow_run(prefect_server.api_url, sub["flow_run_id"])
        # The audit trail links the team's runs; each got exactly its batch's selection.
        assert run.deployment_id == dep_id and run.state_type == "COMPLETED", run.state_message
        want = " ".join(execution.batch_selectors(batch["models"], graph))
        assert run.parameters["dbt_selects"] == {"run": want}
        assert run.parameters["dbt_repo_branch"] == "main"
        received = json.loads((stored / run.id / "received.json").read_text())
        assert received["dbt_selects"] == {"run": want} and f"rescue:{rid}" in received["tags"]
        results = json.loads((stored / run.id / "run_results.json").read_text())["results"]
        assert [r["unique_id"] for r in results] == batch["models"]
        # Context and (from the runner, as the team's flow adds none) result artifacts on its runs.
        keys = [a.key for a in prefect_artifacts.read_markdown(run.id, api_url=prefect_server.api_url)]
        assert sorted(keys) == [f"rescue-{rid}", f"rescue-{rid}-result"], keys
    assert [b["models"] for b in validated["batches"]] == [["model.lakehouse.stg_orders"],
                                                           ["model.lakehouse.int_orders"]]
    con = duckdb.connect(str(lake.db_path), read_only=True)
    try:
        assert con.execute(f"select amount from int_orders where order_id = {NEW_ORDER_ID}").fetchall() \
            == [(42.0,)]
    finally:
        con.close()

    # A full refresh: refused at validate time while the mapping cannot express it ...
    fr = {"version": 1, "reason": "stg_orders logic changed; rebuild it from scratch", "requested_by": "ana",
          "select": "stg_orders", "full_refresh": True}
    path = repo.dev / "rescues" / "2026-12-07-full-refresh.yaml"
    path.write_text(yaml.safe_dump(fr, sort_keys=False))
    refused = repo.rescue("validate", str(path), cwd=repo.dev, check=False)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("full_refresh"))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"2026-12-07-full-refresh.yaml:{line}" in refused.stdout and "RR020" in refused.stdout

    # ... and carried once the mapping passes it through the selection string the template hands to dbt.
    cfg["prefect"]["mapping"]["full_refresh"] = "flag"
    (repo.dev / "rescue.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    git(repo.dev, "commit", "-qam", "the template passes dbt flags through dbt_selects.run")
    repo.merge_request("2026-12-07-full-refresh", fr)
    out = repo.rescue("apply", "--wait", "--poll", "1", "--timeout", "300")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    (sub,) = [e.fields for e in repo.audit_events()
              if e.request_id == "2026-12-07-full-refresh" and e.type == audit.BATCH_SUBMITTED]
    run = prefect_api.read_flow_run(prefect_server.api_url, sub["flow_run_id"])
    assert run.state_type == "COMPLETED" and run.parameters["dbt_selects"]["run"].endswith(" --full-refresh")
    ran = json.loads((stored / run.id / "run_results.json").read_text())
    assert ran["args"]["full_refresh"] is True  # dbt itself says it ran with --full-refresh
