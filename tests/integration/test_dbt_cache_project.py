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


def _git(root: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_a_commit_keys_its_parse_and_a_new_commit_parses_again(example_copy: ExampleBuild, cache: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """What a tick does: the approved commit's tree (trusted.dbt_at) keyed by its SHA, the tree
    never hashed; another commit (or another tree of it) is another key."""
    from rescue_runner.config import config_from_data
    from rescue_runner.pipeline import open_dbt
    from rescue_runner.trusted import dbt_at

    for k, v in example_copy.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("DBT_PROJECT_DIR")
    monkeypatch.delenv("DBT_PROFILES_DIR")
    root = example_copy.project_dir.parent
    (root / ".gitignore").write_text("*.duckdb\n*.duckdb.wal\ntarget/\nlogs/\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "example")
    cfg = config_from_data(root, {"dbt": {"project_dir": "lakehouse", "profiles_dir": "lakehouse",
                                          "target": "dev"}})

    def hashed(_: Path) -> str:
        raise AssertionError("the tree of a known commit was hashed")

    monkeypatch.setattr(dbt_cache, "tree_hash", hashed)
    first = dbt_at(cfg, root, "HEAD").dbt
    sha1 = _git(root, "rev-parse", "HEAD")
    assert first.revision == f"{sha1}:{first.project_dir}" and first.project_dir != root / "lakehouse"
    assert open_dbt(dbt_at(cfg, root, "HEAD")).parsed
    again = open_dbt(dbt_at(cfg, root, "HEAD"))
    assert not again.parsed  # the same commit: its parse, from the cache

    (root / "lakehouse" / "models" / "marts" / "mart_orders_copy.sql").write_text(
        "select * from {{ ref('int_orders') }}\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "a model")
    second = dbt_at(cfg, root, "HEAD").dbt
    assert second.revision is not None and second.revision != first.revision
    changed = open_dbt(dbt_at(cfg, root, "HEAD"))
    assert changed.parsed  # another commit is never answered from the first one's parse
    assert "model.lakehouse.mart_orders_copy" in changed.select(["int_orders+"])
    assert "model.lakehouse.mart_orders_copy" not in again.select(["int_orders+"])
    # the working tree is not a commit: without a revision its content is hashed (and differs)
    assert cfg.dbt.revision is None
