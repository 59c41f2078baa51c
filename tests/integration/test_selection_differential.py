"""Differential tests: rescue's in-process selection equals real `dbt ls`, selector by selector."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.dbt_ls import dbt_ls, make_stub_project

from rescue_runner.adapters.dbt import DbtProject

pytestmark = pytest.mark.slow

GITLAB_SELECTORS: list[tuple[list[str], list[str]]] = [
    (["fct_event"], []),
    (["+fct_event"], []),
    (["fct_event+"], []),
    (["1+dim_date"], []),
    (["dim_date+1"], []),
    (["2+dim_crm_account+2"], []),
    (["@dim_crm_account"], []),
    (["tag:product"], []),
    (["tag:mnpi_exception"], []),
    (["config.materialized:incremental"], []),
    (["config.materialized:incremental,tag:product"], []),
    (["tag:product", "tag:people"], []),
    (["config.materialized:table"], ["tag:mnpi"]),
    (["path:models/common_mart_sales"], []),
    (["package:snowplow"], []),
    (["fqn:gitlab_snowflake.common_prep.*"], []),
    (["dim_date+"], ["tag:workspace"]),
    (["+fct_event", "dim_date"], ["fct_event"]),
    (["config.full_refresh:false"], []),
    (["resource_type:model,tag:zuora"], []),
    (["gitlab_snowflake.common.*"], []),
    (["gainsight*"], ["*_source"]),
    (["no_such_model_anywhere"], []),
]


@pytest.fixture(scope="module")
def gitlab(gitlab_manifest_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[DbtProject, Path]:
    stub = make_stub_project(tmp_path_factory.mktemp("stub"), "gitlab_snowflake")
    project = DbtProject.from_manifest(gitlab_manifest_path, project_root=stub)
    # A checkout has the model files: recreate them (empty) so path: selectors glob as in CI.
    for node in project.manifest.nodes.values():
        f = stub / node.original_file_path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    return project, stub


@pytest.mark.gitlab
@pytest.mark.parametrize(("select", "exclude"), GITLAB_SELECTORS, ids=lambda v: " ".join(v) or "-")
def test_gitlab_selection_equals_dbt_ls(gitlab: tuple[DbtProject, Path], select: list[str],
                                        exclude: list[str]) -> None:
    project, stub = gitlab
    ours = project.select(select, exclude)
    theirs = dbt_ls(project.manifest, stub, stub, select, exclude)
    assert ours == theirs
    assert all(uid.startswith("model.") for uid in ours)


def test_gitlab_selectors_are_not_trivial(gitlab: tuple[DbtProject, Path]) -> None:
    """The differential cases cover small, large and empty selections (so equality means something)."""
    project, _ = gitlab
    sizes = [len(project.select(s, e)) for s, e in GITLAB_SELECTORS]
    assert 1 <= sum(1 for n in sizes if n == 0) <= 2
    assert max(sizes) > 500
    assert sum(1 for n in sizes if 1 <= n <= 50) >= 5


EXAMPLE_SELECTORS: list[tuple[list[str], list[str]]] = [
    (["int_orders"], []),
    (["int_orders+"], []),
    (["+mart_customers"], []),
    (["1+mart_customers"], []),
    (["int_orders+1"], []),
    (["@int_customer_orders"], []),
    (["tag:finance"], []),
    (["tag:marts,tag:finance"], []),
    (["config.materialized:incremental"], []),
    (["config.incremental_strategy:microbatch"], []),
    (["config.full_refresh:false"], []),
    (["config.meta.rescue.heavy:true"], []),
    (["path:models/marts"], []),
    (["path:models/staging/stg_orders.sql+"], []),
    (["file:int_orders.sql"], []),
    (["fqn:lakehouse.marts.*"], []),
    (["lakehouse.intermediate.*"], []),
    (["stg_*"], ["stg_events"]),
    (["int_orders+", "int_events_daily+"], ["mart_customers"]),
    (["+mart_finance_summary", "tag:events"], ["tag:staging"]),
    (["package:lakehouse,config.materialized:table"], []),
    (["mart_does_not_exist"], []),
]


@pytest.fixture(scope="module")
def example_project(example_build) -> DbtProject:  # type: ignore[no-untyped-def]
    return DbtProject.from_project(example_build.project_dir, example_build.profiles_dir)


@pytest.mark.parametrize(("select", "exclude"), EXAMPLE_SELECTORS, ids=lambda v: " ".join(v) or "-")
def test_example_selection_equals_dbt_ls(example_project: DbtProject, select: list[str],
                                         exclude: list[str]) -> None:
    root = example_project.project_root
    ours = example_project.select(select, exclude)
    assert ours == dbt_ls(example_project.manifest, root, root, select, exclude)


def test_example_state_modified_equals_dbt_ls(example_copy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """state:modified+ against a production manifest: a changed int_orders selects its lineage."""
    import shutil

    state = tmp_path / "prod-state"
    state.mkdir()
    shutil.copy(example_copy.manifest_path, state / "manifest.json")
    sql = example_copy.project_dir / "models" / "intermediate" / "int_orders.sql"
    sql.write_text(sql.read_text(encoding="utf-8") + "\n-- hotfix\n", encoding="utf-8")
    project = DbtProject.from_project(example_copy.project_dir, example_copy.profiles_dir, state_dir=state)
    ours = project.select(["state:modified+"])
    assert "model.lakehouse.int_orders" in ours and "model.lakehouse.mart_revenue" in ours
    assert "model.lakehouse.stg_orders" not in ours
    root = example_copy.project_dir
    assert ours == dbt_ls(project.manifest, root, root, ["state:modified+"], state=state)
