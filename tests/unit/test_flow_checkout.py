"""The flow's project and profile checks: a relative DuckDB path fails the run, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescue_runner.dbt_args import UnsafeDbtArgument
from rescue_runner.flows.checkout import ProfileError, check_profile_paths, project_dirs


def project(tmp_path: Path, path: str) -> Path:
    (tmp_path / "dbt_project.yml").write_text("name: shop\nprofile: shop\nversion: '1.0'\n")
    (tmp_path / "profiles.yml").write_text(
        "shop:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n"
        f"      path: \"{path}\"\n      schema: main\n")
    return tmp_path


def test_a_relative_duckdb_path_fails_naming_profile_target_and_path(tmp_path: Path) -> None:
    p = project(tmp_path, "{{ env_var('SHOP_DB', 'shop.duckdb') }}")
    with pytest.raises(ProfileError, match=r"profile 'shop', target 'prod' .*'shop\.duckdb' is relative"):
        check_profile_paths(p, str(p), None)


def test_absolute_memory_and_remote_paths_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = project(tmp_path, "{{ env_var('SHOP_DB', 'shop.duckdb') }}")
    monkeypatch.setenv("SHOP_DB", str(tmp_path / "wh" / "shop.duckdb"))
    check_profile_paths(p, str(p), "prod")
    for path in (":memory:", "md:analytics", "s3://bucket/shop.duckdb"):
        check_profile_paths(project(tmp_path, path), str(tmp_path), None)


def test_what_the_check_cannot_read_is_left_to_dbt(tmp_path: Path) -> None:
    check_profile_paths(tmp_path, str(tmp_path), None)  # no dbt_project.yml, no profiles.yml


def test_a_repository_url_needs_an_exact_commit(tmp_path: Path) -> None:
    summary: dict[str, object] = {}
    with pytest.raises(UnsafeDbtArgument, match="needs dbt_repo_commit"):
        project_dirs("file:///srv/origin.git", None, None, "lakehouse", None, summary)
    with pytest.raises(UnsafeDbtArgument, match="not a full commit SHA"):
        project_dirs("file:///srv/origin.git", "main", None, "lakehouse", None, summary)
    with pytest.raises(UnsafeDbtArgument, match="inside the repository"):
        project_dirs("file:///srv/origin.git", "a" * 40, None, "../elsewhere", None, summary)
