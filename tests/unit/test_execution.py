"""execution: the pure parts (selectors for a batch, keys, names, parameters, embedded defaults)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from rescue_runner import execution
from rescue_runner.config import config_from_data
from rescue_runner.errors import RescueError
from rescue_runner.model import EventTime, NodeInfo, PlannedBatch, ProjectGraph


def _graph(*nodes: tuple[str, str]) -> ProjectGraph:
    infos = {uid: NodeInfo(uid, uid.split(".")[2], uid.split(".")[0], original_file_path=path)
             for uid, path in nodes}
    return ProjectGraph(nodes=infos, parents={uid: () for uid in infos}, identity="sha256:x")


GRAPH = _graph(("model.lh.int_orders", "models/intermediate/int_orders.sql"),
               ("model.lh.mart_revenue", "models/marts/mart_revenue.sql"),
               ("seed.lh.raw_orders", "seeds/raw_orders.csv"),
               ("model.other.int_orders", "models/int_orders.sql"),
               ("snapshot.lh.snap_a", "snapshots/snaps.yml"),
               ("snapshot.lh.snap_b", "snapshots/snaps.yml"),
               ("model.lh.weird", "models/we ird.sql"),
               ("model.lh.globby", "models/x[1].sql"))


def test_batch_selectors_are_file_and_package_intersections() -> None:
    assert execution.batch_selectors(
        ["model.lh.int_orders", "seed.lh.raw_orders", "model.other.int_orders"], GRAPH) == (
        "path:models/intermediate/int_orders.sql,package:lh",
        "path:seeds/raw_orders.csv,package:lh",
        "path:models/int_orders.sql,package:other",
    )


@pytest.mark.parametrize("uid, message", [
    ("model.lh.missing", "not a selectable node"),
    ("snapshot.lh.snap_a", "also defines snapshot.lh.snap_b"),
    ("model.lh.weird", "allowlist"),
    ("model.lh.globby", "cannot be used as an exact selector"),
])
def test_batch_selectors_refuse_what_they_cannot_select_exactly(uid: str, message: str) -> None:
    with pytest.raises(RescueError, match=message):
        execution.batch_selectors([uid], GRAPH)


def test_idempotency_key_covers_every_component() -> None:
    base = ("dep", "req", "sha256:abc", 1, 1)
    key = execution.idempotency_key(*base)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert execution.idempotency_key(*base) == key
    for i in range(len(base)):
        changed = list(base)
        changed[i] = changed[i] + 1 if isinstance(changed[i], int) else f"{changed[i]}x"
        assert execution.idempotency_key(*changed) != key  # type: ignore[arg-type]
    # No ambiguity from concatenation: ("ab", "c") is not ("a", "bc").
    assert execution.idempotency_key("ab", "c", "h", 1, 1) != execution.idempotency_key("a", "bc", "h", 1, 1)


def test_names_tags_and_urls() -> None:
    assert execution.run_name("2026-11-23-hotfix", 2) == "2026-11-23-hotfix-batch-2"
    assert execution.run_tag("2026-11-23-hotfix") == "rescue:2026-11-23-hotfix"
    assert execution.ui_url("http://127.0.0.1:4200/api/", "abc") == "http://127.0.0.1:4200/runs/flow-run/abc"
    assert execution.prefect_api_url({"PREFECT_API_URL": "  "}) is None
    assert execution.prefect_api_url({"PREFECT_API_URL": "http://h/api"}) == "http://h/api"


def test_batch_parameters() -> None:
    batch = PlannedBatch(1, ("model.lh.int_orders",), True, 3.0)
    sel = execution.batch_selectors(batch.models, GRAPH)
    assert execution.batch_parameters(batch, sel) == {
        "dbt_selects": {"select": "path:models/intermediate/int_orders.sql,package:lh"},
        "full_refresh": True, "event_time_start": None, "event_time_end": None}
    cet = timezone(timedelta(hours=1))
    window = EventTime(datetime(2026, 3, 1, 1, tzinfo=cet), datetime(2026, 4, 1, tzinfo=UTC))
    light = PlannedBatch(1, batch.models, False, 3.0)
    params = execution.batch_parameters(light, sel, window)
    assert params["event_time_start"] == "2026-03-01T00:00:00+00:00"
    assert params["event_time_end"] == "2026-04-01T00:00:00+00:00"
    with pytest.raises(RescueError, match="replace whole microbatch tables"):
        execution.batch_parameters(batch, sel, window)


def test_deployment_parameters_and_embedded_runs_home(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    cfg = config_from_data(tmp_path, {"dbt": {"project_dir": "proj", "target": "prod"}})
    params = execution.deployment_parameters(cfg)
    # Paths inside the repository: every checkout of the commit has them; no path of this machine.
    assert params == {"dbt_project_path": "proj", "profiles_dir": "proj", "target": "prod",
                      "run_results_storage_path": str((tmp_path / ".rescue" / "runs").resolve())}
    outside = config_from_data(tmp_path, {"dbt": {"project_dir": ".", "profiles_dir": str(tmp_path.parent)}})
    assert execution.deployment_parameters(outside)["profiles_dir"] is None  # the worker's own
    with pytest.raises(RescueError, match="outside the git repository"):
        execution.deployment_parameters(config_from_data(tmp_path, {"dbt": {"project_dir": "../x"}}))
    with pytest.raises(RescueError, match="not inside a git repository"):
        execution.deployment_parameters(config_from_data(tmp_path.parent, {}))
    # Embedded runs are recorded in the repository's .rescue folder; PREFECT_HOME plays no part.
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "elsewhere"))
    assert execution.embedded_runs_home(cfg) == tmp_path / ".rescue" / "runs-local"


def test_repository_url_never_carries_credentials(tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin",
                    "https://ci:s3cr3t-pw@git.example.com/data/dbt.git"], check=True)
    assert execution.repository_url(config_from_data(tmp_path, {})) == "https://git.example.com/data/dbt.git"
    given = config_from_data(tmp_path, {"repository": {"url": "git@git.example.com:data/dbt.git"}})
    assert execution.repository_url(given) == "git@git.example.com:data/dbt.git"
    local = config_from_data(tmp_path, {"repository": {"url": "../origin.git"}})
    assert execution.repository_url(local) == (tmp_path.parent / "origin.git").resolve().as_uri()


def test_batch_parameters_carry_the_commit() -> None:
    batch = PlannedBatch(1, ("model.lh.int_orders",), False, 1.0)
    sha = "a" * 40
    params = execution.batch_parameters(batch, ["path:models/a.sql,package:lh"], commit=sha,
                                        repo_url="file:///srv/origin.git", token_secret="repo-token")
    assert params["dbt_repo_commit"] == sha and params["dbt_repo_url"] == "file:///srv/origin.git"
    assert params["dbt_repo_token_secret"] == "repo-token"
    embedded = execution.batch_parameters(batch, ["path:models/a.sql,package:lh"], commit=sha)
    assert "dbt_repo_url" not in embedded


def test_embedded_mode_has_no_queue_to_wait_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    decision = execution.contention(config_from_data(tmp_path, {}), heavy=True)
    assert decision.go and decision.summary.startswith("go: embedded mode")


def test_attempts_start_at_one(tmp_path: Path) -> None:
    with pytest.raises(RescueError, match="attempt"):
        execution.submit_batch(config_from_data(tmp_path, {}), "r", "h",
                               PlannedBatch(1, ("model.lh.int_orders",), False, 1.0), 0, GRAPH)


def test_the_server_executor_asks_with_the_whole_ask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate, the window and the promised slots reach the forecast (not just 'heavy')."""
    from datetime import UTC, datetime

    from rescue_runner.contention import Ask, Decision
    from rescue_runner.executors import ServerExecutor

    seen: list[Ask] = []

    def fake(config: Any, heavy: bool = False, now: Any = None, *, ask: Ask | None = None,
             api_url: str | None = None) -> Decision:
        assert ask is not None
        seen.append(ask)
        return Decision(True, ("go",))

    monkeypatch.setattr(execution, "contention", fake)
    ask = Ask(1800.0, True, datetime(2026, 11, 24, 0, 30, tzinfo=UTC), "Europe/Berlin")
    ServerExecutor(config_from_data(tmp_path, {}), "http://127.0.0.1:9/api").contention(ask)
    assert seen == [ask]
