"""Golden plans on the bundled example project: real dbt parse, real selection, real history.

``RR_UPDATE_GOLDEN=1`` rewrites the files after a deliberate change to the example project
or the planner. Without history every model gets the stated 60 s default, so the plan does
not depend on how fast this machine built the example.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rescue_runner.adapters.dbt import DbtProject
from rescue_runner.estimates import Estimates, read_history
from rescue_runner.planner import build_plan, plan_to_json
from rescue_runner.request import load_request

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden"
REQUESTS = sorted((REPO / "rescues").glob("*.yaml"))


@pytest.fixture(scope="module")
def project(example_build) -> DbtProject:  # type: ignore[no-untyped-def]
    return DbtProject.from_project(example_build.project_dir, example_build.profiles_dir)


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_golden_plan_of_shipped_request(project: DbtProject, path: Path) -> None:
    request, findings = load_request(path, f"rescues/{path.name}")
    assert request is not None, findings
    models = project.select(request.select, request.exclude)
    plan = build_plan(request, models, project.graph(), Estimates().covering(models))
    text = plan_to_json(plan)
    golden = GOLDEN / f"plan_example_{path.stem}.json"
    if os.environ.get("RR_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_history_changes_estimates_not_order(project: DbtProject, example_build) -> None:  # type: ignore[no-untyped-def]
    """With the real run_results.json of the example build, estimates come from history and
    no model is unknown; the batches (lineage order, max_models) stay the golden ones."""
    path = REPO / "rescues" / "2026-11-23-int-orders-hotfix.yaml"
    request, _ = load_request(path, f"rescues/{path.name}")
    assert request is not None
    models = project.select(request.select)
    estimates, warnings = read_history(example_build.run_results_path, models=models)
    assert not warnings
    plan = build_plan(request, models, project.graph(), estimates)
    assert all(not b.unknown_estimates for b in plan.batches)
    assert 0 < plan.estimated_seconds < 60  # tiny DuckDB models, measured, never silently zero
    golden = json.loads((GOLDEN / f"plan_example_{path.stem}.json").read_text(encoding="utf-8"))
    assert [b.models for b in plan.batches] == [tuple(b["models"]) for b in golden["batches"]]
