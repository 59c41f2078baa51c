"""The bundled example dbt project (examples/lakehouse), built for tests.

``build_example(dest)`` copies the project, runs ``dbt seed`` and ``dbt build`` in a subprocess
against a DuckDB file beside the copy, and returns an :class:`ExampleBuild`.

Fixtures:

* ``example_build`` (session): built once per test session. Treat it as read-only
  (open the database with ``duckdb.connect(..., read_only=True)``).
* ``example_copy`` (function): a fresh, writable copy of the built project, its ``target/``
  and its database in ``tmp_path``, for tests that run dbt or change the warehouse.

Layout of a build or copy under ``dest``::

    dest/lakehouse/             project (dbt_project.yml, profiles.yml, models, seeds, target/)
    dest/lakehouse.duckdb       the warehouse (the DuckDB catalog is named "lakehouse")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SOURCE = REPO_ROOT / "examples" / "lakehouse"
PROJECT_NAME = "lakehouse"
DB_FILENAME = "lakehouse.duckdb"

# Telemetry off; everything else dbt needs comes from ExampleBuild.env.
BASE_ENV = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
DBT_TIMEOUT_SECONDS = 300

_IGNORED_NAMES = ("target", "logs", "dbt_packages", "*.duckdb", "*.duckdb.wal", "__pycache__", ".user.yml")


class ExampleBuildError(RuntimeError):
    """dbt failed while building or running the example project."""


@dataclass(frozen=True)
class ExampleBuild:
    """A built copy of examples/lakehouse. ``env`` holds the variables dbt needs for this copy."""

    project_dir: Path
    profiles_dir: Path
    db_path: Path
    manifest_path: Path
    run_results_path: Path
    env: dict[str, str] = field(hash=False)

    @property
    def target_dir(self) -> Path:
        return self.project_dir / "target"

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())

    def run_results(self) -> dict:
        return json.loads(self.run_results_path.read_text())


def dbt_executable() -> list[str]:
    """The dbt command of the running interpreter's environment (console script, else the module)."""
    script = Path(sys.executable).parent / "dbt"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "dbt.cli.main"]


def dbt_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The process environment for a dbt subprocess: inherited variables without any ``DBT_*``
    (a stray DBT_TARGET or DBT_PROFILES_DIR would redirect dbt), plus telemetry off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env.update(BASE_ENV)
    env.update(extra)
    return env


def run_dbt(
    build: ExampleBuild, args: Sequence[str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``dbt <args>`` against ``build`` in a subprocess.

    With ``check`` (the default), a non-zero exit raises ExampleBuildError carrying dbt's output."""
    cmd = [
        *dbt_executable(),
        *args,
        "--project-dir",
        str(build.project_dir),
        "--profiles-dir",
        str(build.profiles_dir),
    ]
    proc = subprocess.run(
        cmd,
        cwd=build.project_dir.parent,
        env=dbt_env(build.env),
        capture_output=True,
        text=True,
        timeout=DBT_TIMEOUT_SECONDS,
        check=False,
    )
    if check and proc.returncode != 0:
        raise ExampleBuildError(
            f"`dbt {' '.join(args)}` failed with exit code {proc.returncode} "
            f"in {build.project_dir}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def _layout(dest: Path) -> ExampleBuild:
    project_dir = dest / PROJECT_NAME
    db_path = dest / DB_FILENAME
    env = {
        **BASE_ENV,
        "LAKEHOUSE_DB": str(db_path),
        "DBT_PROFILES_DIR": str(project_dir),
        "DBT_PROJECT_DIR": str(project_dir),
    }
    return ExampleBuild(
        project_dir=project_dir,
        profiles_dir=project_dir,
        db_path=db_path,
        manifest_path=project_dir / "target" / "manifest.json",
        run_results_path=project_dir / "target" / "run_results.json",
        env=env,
    )


def build_example(dest: Path, source: Path = EXAMPLE_SOURCE) -> ExampleBuild:
    """Copy the example project into ``dest/lakehouse`` and build it with ``dbt seed`` + ``dbt build``
    against ``dest/lakehouse.duckdb``. Raises ExampleBuildError with dbt's output if dbt fails."""
    dest = Path(dest).resolve()
    build = _layout(dest)
    if build.project_dir.exists() or build.db_path.exists():
        raise FileExistsError(f"{build.project_dir} or {build.db_path} already exists")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, build.project_dir, ignore=shutil.ignore_patterns(*_IGNORED_NAMES))
    run_dbt(build, ["seed"])
    run_dbt(build, ["build"])
    for artifact in (build.manifest_path, build.run_results_path, build.db_path):
        if not artifact.is_file():
            raise ExampleBuildError(f"dbt succeeded but {artifact} is missing")
    return build


def copy_example(built: ExampleBuild, dest: Path) -> ExampleBuild:
    """A writable copy of a built project (sources, ``target/``) and its database in ``dest``.

    Absolute paths of the original inside ``manifest.json`` and ``run_results.json`` are
    rewritten to the copy, so the copied artifacts describe the copy."""
    dest = Path(dest).resolve()
    copy = _layout(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built.project_dir, copy.project_dir, ignore=shutil.ignore_patterns("logs"))
    shutil.copy2(built.db_path, copy.db_path)
    wal = built.db_path.with_name(built.db_path.name + ".wal")
    if wal.is_file():
        shutil.copy2(wal, copy.db_path.with_name(copy.db_path.name + ".wal"))
    # The database path first: the project path is a prefix of it.
    replacements = [
        (_json_str(built.db_path), _json_str(copy.db_path)),
        (_json_str(built.project_dir), _json_str(copy.project_dir)),
    ]
    for artifact in (copy.manifest_path, copy.run_results_path):
        if artifact.is_file():
            text = artifact.read_text()
            for old, new in replacements:
                text = text.replace(old, new)
            artifact.write_text(text)
    return copy


def _json_str(path: Path) -> str:
    """``path`` as it appears inside a JSON string (escaped, without quotes)."""
    return json.dumps(str(path))[1:-1]


@pytest.fixture(scope="session")
def example_build(tmp_path_factory: pytest.TempPathFactory) -> ExampleBuild:
    """examples/lakehouse seeded and built once per session. Read-only: use ``example_copy`` to mutate."""
    return build_example(tmp_path_factory.mktemp("example-build"))


@pytest.fixture
def example_copy(example_build: ExampleBuild, tmp_path: Path) -> ExampleBuild:
    """A fresh, writable copy of the built example project and its DuckDB file."""
    return copy_example(example_build, tmp_path / "example")
