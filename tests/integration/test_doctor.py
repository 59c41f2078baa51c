"""`rescue doctor` on real parts: a correct setup (session Prefect server and worker, a deployed
deployment, git remote, webhook) says ok and exits 0; each broken variant exits 1 with exactly
one line naming the problem and its fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.example import ExampleBuild
from support.prefect_server import TELEMETRY_OFF, PrefectServer, PrefectWorker, free_port
from support.rescue_repo import RescueRepo, config, git, make_repo

from rescue_runner import execution
from rescue_runner.cli import main
from rescue_runner.config import load_config

pytestmark = pytest.mark.slow

WEBHOOK = {"RESCUE_WEBHOOK_URL": "https://hooks.example.com/services/T/B/x"}


@pytest.fixture(scope="module")
def setup(prefect_server: PrefectServer, prefect_worker: PrefectWorker, example_build: ExampleBuild,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RescueRepo, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("doctor")
    cfg = config(storage=root / "runs", deployment="rescue_doctor")
    cfg["notifications"] = {"webhook_url_env": "RESCUE_WEBHOOK_URL"}
    repo = make_repo(root / "repo", example_build.project_dir, cfg, env=prefect_server.env)
    job = {"env": {"LAKEHOUSE_DB": str(example_build.db_path), **TELEMETRY_OFF}}
    api = prefect_server.api_url
    execution.deploy(load_config(repo.runner / "rescue.yaml"), api_url=api, job_variables=job)
    idle = _variant(cfg, "prefect", work_pool="rescue-doctor-idle", deployment="rescue_idle")
    _write(repo, "idle.yaml", idle)
    execution.deploy(load_config(repo.runner / "idle.yaml"), api_url=api, job_variables=job)
    _write(repo, "relative.yaml", _variant(cfg, "prefect", deployment="rescue_relative"))
    execution.deploy(load_config(repo.runner / "relative.yaml"), api_url=api,
                     job_variables={"env": {"LAKEHOUSE_DB": "lakehouse.duckdb"}})
    yield repo, cfg


def _variant(cfg: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    return {**cfg, section: {**cfg[section], **values}}


def _write(repo: RescueRepo, name: str, data: dict[str, Any]) -> Path:
    path = repo.runner / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _doctor(repo: RescueRepo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            config_name: str = "rescue.yaml",
            env: dict[str, str | None] | None = None) -> tuple[int, list[str]]:
    monkeypatch.chdir(repo.runner)
    for k, v in {**repo.env, **WEBHOOK, **(env or {})}.items():
        if k.startswith(("PREFECT_", "RESCUE_", "LAKEHOUSE")):
            if v is None:
                monkeypatch.delenv(k, raising=False)
            else:
                monkeypatch.setenv(k, v)
    code = main(["--config", str(repo.runner / config_name), "doctor"])
    return code, [line for line in capsys.readouterr().out.splitlines() if line]


def test_a_correct_setup_is_ok(setup: tuple[RescueRepo, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _doctor(setup[0], monkeypatch, capsys)
    assert (code, len(lines)) == (0, 1), lines
    assert lines[0] == "ok: rescue.yaml, prefect, profile, git, alerts"


@pytest.mark.parametrize(("case", "expected"), [
    ("no api url", "prefect: PREFECT_API_URL is not set"),
    ("api down", "prefect: the Prefect API at http://127.0.0.1:"),
    ("not deployed", "prefect: deployment transform_and_catalog/rescue_missing not found"),
    ("no worker", "worker: no worker online for work pool rescue-doctor-idle (fix: start one: prefect"),
    ("relative duckdb", "profile: target dev: path resolves to the relative path 'lakehouse.duckdb' in the "
                        "worker's environment"),
    ("no protected branch", "git: remote origin has no branch release"),
    ("audit not pushable", "git: cannot push the audit branch rescue-audit to origin"),
    ("no webhook", "alerts: $RESCUE_WEBHOOK_URL is not set here"),
    ("no alerts", "alerts: no notifications section"),
])
def test_each_broken_setup_is_one_line_and_exit_1(
        setup: tuple[RescueRepo, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], example_build: ExampleBuild, case: str, expected: str) -> None:
    repo, cfg = setup
    name, env = "rescue.yaml", {}
    if case == "no api url":
        env = {"PREFECT_API_URL": None, "LAKEHOUSE_DB": str(example_build.db_path)}
    elif case == "api down":
        env = {"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
               "LAKEHOUSE_DB": str(example_build.db_path)}
    elif case == "not deployed":
        _write(repo, name := "missing.yaml", _variant(cfg, "prefect", deployment="rescue_missing"))
    elif case == "no worker":
        name = "idle.yaml"
    elif case == "relative duckdb":
        name = "relative.yaml"
    elif case == "no protected branch":
        _write(repo, name := "release.yaml", _variant(cfg, "audit", protected_branch="release"))
    elif case == "audit not pushable":
        git(repo.runner, "remote", "set-url", "--push", "origin", str(repo.root / "no-such-remote.git"))
    elif case == "no webhook":
        env = {"RESCUE_WEBHOOK_URL": None}
    elif case == "no alerts":
        _write(repo, name := "quiet.yaml", {k: v for k, v in cfg.items() if k != "notifications"})
    try:
        code, lines = _doctor(repo, monkeypatch, capsys, name, env)
    finally:
        if case == "audit not pushable":
            git(repo.runner, "remote", "set-url", "--push", "origin", str(repo.origin))
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]
    assert "(fix: " in lines[0]
