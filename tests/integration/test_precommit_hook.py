"""The pre-commit hooks of .pre-commit-hooks.yaml, run by the real `pre-commit` in a throwaway dbt
repository: `rescue-validate` (language: python: pre-commit builds a virtualenv and pip-installs
this repository at HEAD with its dependencies and the team's adapter) and
`rescue-validate-system` (the `rescue` on PATH), the latter also as a real git commit hook that
rejects a bad request."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_onboarding import make_dbt_repo

from rescue_runner.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GOOD = ("version: 1\nreason: \"int_orders double-counted refunds; rebuild downstream\"\n"
        "requested_by: ana@example.com\nselect: int_orders+\nbatches:\n  max_models: 3\n")
BAD = "version: 1\nreason: short\nrequested_by: ana@example.com\nselect: \"int_orders; rm -rf /\"\n"


def head_sha() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = make_dbt_repo(tmp_path / "analytics")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        assert main(["init", "--ci", "none", "--timezone", "UTC"]) == 0
    finally:
        os.chdir(cwd)
    (root / "rescues" / "2026-11-23-int-orders.yaml").write_text(GOOD)
    (root / "rescues" / "2026-11-23-bad.yaml").write_text(BAD)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "LAKEHOUSE_DB": str(tmp_path / "lh.duckdb"),
           "PRE_COMMIT_COLOR": "never"}
    return root, env


def pre_commit(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "pre-commit"), *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


def test_python_hook_from_a_team_config(repo: tuple[Path, dict[str, str]]) -> None:
    """`repo: <this repository>` + `id: rescue-validate` + the team's adapter: built once, then cached.

    The adapter is the team's (rescue-runner does not pull one in): it is listed under
    additional_dependencies, as .pre-commit-hooks.yaml and the docs say.
    """
    root, env = repo
    (root / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {REPO.as_posix()}\n    rev: {head_sha()}\n    hooks:\n"
        "      - id: rescue-validate\n        additional_dependencies: ['dbt-duckdb>=1.11,<1.12']\n")
    started = time.monotonic()
    ok = pre_commit(root, env, "run", "rescue-validate", "--files", "rescues/2026-11-23-int-orders.yaml")
    first = time.monotonic() - started
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Passed" in ok.stdout
    started = time.monotonic()
    bad = pre_commit(root, env, "run", "rescue-validate", "--files", "rescues/2026-11-23-bad.yaml")
    cached = time.monotonic() - started
    assert bad.returncode == 1 and "RR010" in bad.stdout, bad.stdout + bad.stderr
    print(f"\npre-commit python hook: first run {first:.1f}s (builds its virtualenv), cached {cached:.1f}s")


def test_system_hook_as_a_git_commit_hook(repo: tuple[Path, dict[str, str]]) -> None:
    """`rescue-validate-system` from a config pointing at this repository, installed as the commit hook."""
    root, env = repo
    (root / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {REPO.as_posix()}\n    rev: {head_sha()}\n    hooks:\n"
        "      - id: rescue-validate-system\n")
    subprocess.run(["git", "add", ".pre-commit-config.yaml"], cwd=root, check=True)
    installed = pre_commit(root, env, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr

    commit = subprocess.run(["git", "commit", "-m", "two requests"], cwd=root, env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    assert commit.returncode != 0, "the bad request must block the commit"
    output = commit.stdout + commit.stderr
    assert "rescue validate (installed rescue)" in output and "Failed" in output
    assert "RR010" in output and "rescues/2026-11-23-bad.yaml" in output

    subprocess.run(["git", "rm", "-q", "--cached", "rescues/2026-11-23-bad.yaml"], cwd=root, check=True)
    (root / "rescues" / "2026-11-23-bad.yaml").unlink()
    commit = subprocess.run(["git", "commit", "-m", "one good request"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert commit.returncode == 0, commit.stdout + commit.stderr
    assert "Passed" in commit.stdout + commit.stderr
