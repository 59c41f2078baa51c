"""What CI installs (`rescue requirements`: the adapter rescue.yaml names, storage packages) and
the JSON Schemas placed in the repository for editors (no URL to trust)."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement

from rescue_runner import scaffold
from rescue_runner.cli import main
from rescue_runner.config import config_from_data

REPO = Path(__file__).resolve().parents[2]


def names(reqs: list[str]) -> dict[str, str]:
    return {Requirement(r).name: str(Requirement(r).specifier) for r in reqs}


def test_requirements_name_the_adapter_and_the_storage_packages(tmp_path: Path) -> None:
    pg = config_from_data(tmp_path, {"dbt": {"adapter": "postgres", "history": "s3://bucket/runs",
                                             "manifest": "gs://bucket/prod/manifest.json"}})
    got = names(scaffold.ci_requirements(pg))
    assert set(got) == {"dbt-postgres", "s3fs", "gcsfs"}
    assert Requirement("x" + got["dbt-postgres"]).specifier.contains("1.11.0")  # the tested range
    other = config_from_data(tmp_path, {"dbt": {"adapter": "snowflake"},
                                        "prefect": {"run_results_storage_path": "az://c/runs"}})
    assert scaffold.ci_requirements(other) == ["dbt-snowflake", *scaffold.extra_requirements("azure")]
    assert scaffold.ci_requirements(config_from_data(tmp_path, {})) == []


def test_rescue_requirements_reads_rescue_yaml(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rescue.yaml").write_text("version: 1\ndbt: {adapter: duckdb, history: s3://b/h}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["requirements"]) == 0
    assert set(names(capsys.readouterr().out.split())) == {"dbt-duckdb", "duckdb", "s3fs"}


def test_schemas_are_written_where_the_modelines_point(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rescue.yaml").write_text("version: 1\n")
    monkeypatch.chdir(tmp_path)
    assert main(["schema", "--write"]) == 0
    for name in scaffold.SCHEMAS:
        shipped = (REPO / "src" / "rescue_runner" / "schema_data" / name).read_text()
        assert (tmp_path / "schema" / name).read_text() == shipped
        assert (REPO / "schema" / name).read_text() == shipped, "stale: run `rescue schema --write`"
    assert main(["schema", "--write"]) == 0  # idempotent
    assert main(["schema", "config"]) == 0 and '"title"' in capsys.readouterr().out


def test_init_places_the_schemas_and_the_adapter(tmp_path: Path) -> None:
    project = tmp_path / "transform"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: x\nprofile: x\n")
    (project / "profiles.yml").write_text("x:\n  target: prod\n  outputs:\n    prod: {type: postgres}\n")
    files = scaffold.plan_init(tmp_path, project, ci=scaffold.CI_SYSTEMS, timezone="UTC", branch="main",
                               pip_spec="rescue-runner @ git+https://git.example.com/rescue-runner@v0.1.0")
    assert {"schema/rescue-request.v1.json", "schema/rescue-config.v1.json"} <= set(files)
    config = files["rescue.yaml"]
    assert config.startswith("# yaml-language-server: $schema=schema/rescue-config.v1.json\n")
    assert "\n  adapter: postgres  " in config
    assert "$schema=../schema/rescue-request.v1.json" in files["rescues/README.md"]
    assert not any("$schema=https" in text for rel, text in files.items() if not rel.endswith(".json"))
    for rel in (".github/workflows/rescue-validate.yml", ".github/workflows/rescue-apply.yml",
                ".gitlab/rescue.gitlab-ci.yml"):
        assert "rescue requirements" in files[rel] and "-r " in files[rel], rel
