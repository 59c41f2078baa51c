"""The manifest and parse caches on the real example project: same answers, less work.

A manifest seen before is answered from its cached graph and remembered selections without
loading dbt's Manifest; a selection the memo cannot answer (path:) loads it from the cache;
a parse is reused for the same tree and redone when a model changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.example import ExampleBuild

from rescue_runner.adapters import dbt_cache
from rescue_runner.adapters.dbt import DbtProject

pytestmark = pytest.mark.slow

SELECTIONS: list[tuple[list[str], list[str]]] = [
    (["int_orders+"], []), (["+mart_revenue"], ["stg_orders"]), (["tag:finance"], []),
    (["@int_orders"], []), (["no_such_model"], []),
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(dbt_cache.DIR_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_cached_manifest_answers_like_a_loaded_one(example_build: ExampleBuild, cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = example_build.project_dir
    monkeypatch.setenv(dbt_cache.SWITCH_ENV, "off")
    plain = DbtProject.from_manifest(example_build.manifest_path, project_root=root)
    expected = [plain.select(s, e) for s, e in SELECTIONS]
    monkeypatch.delenv(dbt_cache.SWITCH_ENV)

    first = DbtProject.from_manifest(example_build.manifest_path, project_root=root)
    assert [first.select(s, e) for s, e in SELECTIONS] == expected
    first.remember()
    assert {p.parent.name for p in cache.glob("*/*.pickle")} == {"manifest", "graph", "selections"}

    second = DbtProject.from_manifest(example_build.manifest_path, project_root=root)
    assert second.graph() == plain.graph()
    assert [second.select(s, e) for s, e in SELECTIONS] == expected
    assert second._manifest is None  # remembered: dbt's Manifest was not even loaded
    path_sel = second.select(["path:models/marts"])
    assert second._manifest is not None and path_sel == plain.select(["path:models/marts"])


def test_a_parse_is_reused_for_the_same_tree_only(example_copy: ExampleBuild, cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in example_copy.env.items():
        monkeypatch.setenv(k, v)
    project = example_copy.project_dir

    def load() -> DbtProject:
        return DbtProject.from_project(project, example_copy.profiles_dir, "dev")

    first = load()
    again = load()
    assert first.parsed and not again.parsed
    assert again.select(["int_orders+"]) == first.select(["int_orders+"])
    assert again.manifest is not first.manifest  # from the cache, not the same object
    new = project / "models" / "marts" / "mart_orders_copy.sql"
    new.write_text("select * from {{ ref('int_orders') }}\n")
    changed = load()
    assert changed.parsed
    assert "model.lakehouse.mart_orders_copy" in changed.select(["int_orders+"])
    assert "model.lakehouse.mart_orders_copy" not in first.select(["int_orders+"])
    assert len(list((cache / "parse").glob("*.pickle"))) == 2
