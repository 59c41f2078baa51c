"""A submitted batch carries its context in Prefect: tags, a context artifact, a result artifact.

Real Prefect server and process worker (session fixtures), real dbt-duckdb on a copy of the
example project. Everything is read back through the Prefect API, and a planted secret (a
registered token value and credentials inside a URL) appears in none of it.
"""

from __future__ import annotations

import json

import pytest
from support.example import ExampleBuild, copy_example
from support.prefect_server import TELEMETRY_OFF, PrefectServer, PrefectWorker
from support.rescue_repo import publish

from rescue_runner import execution
from rescue_runner.adapters import prefect_api, prefect_artifacts
from rescue_runner.config import config_from_data
from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json
from rescue_runner.model import PlannedBatch
from rescue_runner.redact import register_secret
from rescue_runner.reporting.prefect_run import RunContext

pytestmark = pytest.mark.slow

SECRET = "glpat-PlantedSecret0042xyz"
URL_PASSWORD = "hunter2urlpass"
PLAN = (PlannedBatch(1, ("model.lakehouse.stg_orders",), estimated_seconds=3.0),
        PlannedBatch(2, ("model.lakehouse.int_orders",), estimated_seconds=4.0))


def test_batch_run_carries_tags_context_and_result_artifacts(
        example_build: ExampleBuild, prefect_server: PrefectServer, prefect_worker: PrefectWorker,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    lake = copy_example(example_build, tmp_path_factory.mktemp("artifact-lake") / "example")
    root = lake.project_dir.parent
    publish(root)  # workers build a pushed commit
    config = config_from_data(root, {
        "dbt": {"project_dir": str(lake.project_dir), "profiles_dir": str(lake.profiles_dir),
                "target": "dev"},
        "prefect": {"run_results_storage_path": str(root / "runs")},
    })
    url = prefect_server.api_url
    execution.deploy(config, api_url=url,
                     job_variables={"env": {"LAKEHOUSE_DB": str(lake.db_path), **TELEMETRY_OFF}})
    graph = graph_from_manifest_dict(load_manifest_json(lake.manifest_path))

    register_secret(SECRET)
    ctx = RunContext(
        request_id="req-artifacts", batch=1, batches=PLAN,
        reason=f"stg_orders lost rows; token {SECRET} via https://ci:{URL_PASSWORD}@git.example.com/a.git",
        requested_by="ana.engineer", ticket="DATA-1412", commit="0123456789abcdef0123456789abcdef01234567",
        audit_url="https://github.com/acme/analytics/tree/rescue-audit/events/req-artifacts",
        pr_url="https://github.com/acme/analytics/pull/7")
    batch = PlannedBatch(1, PLAN[0].models, False, 3.0)
    sub = execution.submit_batch(config, "req-artifacts", "sha256:art", batch, 1, graph, api_url=url,
                                 context=ctx)
    assert sub.notes == ()
    run = prefect_api.wait_for_flow_run(url, sub.flow_run_id, timeout=240)
    assert run.state_type == "COMPLETED", run.state_message

    # Tags, as the API returns them (the deployment adds its own "rescue").
    assert {"rescue", "rescue:req-artifacts", "ticket:DATA-1412", "batch:1/2"} <= set(run.tags)
    assert "full-refresh" not in run.tags

    arts = prefect_artifacts.read_markdown(sub.flow_run_id, api_url=url)
    by_key = {a.key: a for a in arts}
    assert set(by_key) == {"rescue-req-artifacts", "rescue-req-artifacts-result"}, by_key
    context = by_key["rescue-req-artifacts"]
    assert context.type == "markdown" and context.flow_run_id == sub.flow_run_id
    assert context.description == "rescue req-artifacts: batch 1 of 2"
    md = context.data
    assert md.startswith("# Rescue `req-artifacts`: batch 1 of 2")
    assert "stg_orders lost rows" in md and "https://git.example.com/a.git" in md
    assert "- **Requested by:** ana.engineer" in md and "- **Ticket:** DATA-1412" in md
    assert "`0123456789ab`" in md and "- `stg_orders` (model.lakehouse.stg_orders)" in md
    assert "| **1** | `stg_orders` | ~3.0s | **this run** |" in md
    assert "| 2 | `int_orders` | ~4.0s | next |" in md
    assert "(https://github.com/acme/analytics/pull/7)" in md and "events/req-artifacts)" in md

    result = by_key["rescue-req-artifacts-result"].data
    assert result.startswith("# dbt build succeeded")
    assert "## Rebuilt (1)\n\n- `model.lakehouse.stg_orders`" in result

    # The planted secret is nowhere Prefect keeps it: tags, artifacts, parameters, name, state.
    everything = json.dumps([run.tags, [a.data for a in arts], [a.description for a in arts],
                             dict(run.parameters), run.name, run.state_message], default=str)
    assert SECRET not in everything and URL_PASSWORD not in everything
