"""Production topology on real parts: what runs is the approved commit, and no secret persists.

A bare git remote is ``origin``; the ``dev`` clone merges requests (as CI and reviewers would);
the ``runner`` clone is the cron runner's checkout; the session's Prefect process worker shares
no working tree with either: it gets the repository URL (``file://`` of the bare remote), the SHA
and a credential reference, and fetches the commit into its own cache. The warehouse is DuckDB
at an absolute path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest
from support.example import ExampleBuild, copy_example
from support.prefect_server import PrefectServer, PrefectWorker
from support.rescue_repo import config, git, make_repo

from rescue_runner import audit, execution
from rescue_runner.adapters import prefect_api

pytestmark = pytest.mark.slow

RID = "2026-12-07-orders-topology"
REQUEST = {"version": 1, "reason": "rebuild the orders lineage from the approved commit",
           "requested_by": "ana", "select": "stg_orders int_orders"}
NEW_ORDER = 900101


def columns(db: Path, table: str) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {r[0] for r in con.execute(
            "select column_name from information_schema.columns where table_name = ?", [table]).fetchall()}
    finally:
        con.close()


def sql(db: Path, statement: str) -> list[Any]:
    con = duckdb.connect(str(db))
    try:
        return con.execute(statement).fetchall()
    finally:
        con.close()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def lake(example_build: ExampleBuild, tmp_path_factory: pytest.TempPathFactory) -> ExampleBuild:
    return copy_example(example_build, tmp_path_factory.mktemp("topology-warehouse") / "example")


def test_only_the_approved_commit_reaches_the_warehouse(
        prefect_server: PrefectServer, prefect_worker: PrefectWorker, lake: ExampleBuild,
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "git", lake.project_dir,
                     config(storage=tmp_path / "runs", deployment="rescue_topology"), env=prefect_server.env)
    repo.deploy(prefect_server.api_url, lake.db_path)
    repo.merge_request(RID, REQUEST)
    approved = git(repo.origin, "rev-parse", "refs/heads/main").strip()

    # The cron runner's checkout: a commit nobody pushed, and an uncommitted edit on top.
    models = repo.runner / "lakehouse" / "models"
    edit(models / "intermediate" / "int_orders.sql", "o.status,", "o.status, 43 as unpushed_col,")
    git(repo.runner, "commit", "-qam", "local experiment, never pushed")
    edit(models / "staging" / "stg_orders.sql", "status\n", "status, 42 as uncommitted_col\n")
    sql(lake.db_path, f"insert into raw_orders values ({NEW_ORDER}, 14, DATE '2026-12-30', 'completed')")

    out = repo.rescue("apply", "--wait", "--poll", "1", "--timeout", "300")
    assert f"{RID}: succeeded: 1 batch(es) completed" in out.stdout, out.stdout + out.stderr[-3000:]

    # Rebuilt (the new raw order is there), from the approved commit only.
    assert sql(lake.db_path, f"select count(*) from int_orders where order_id = {NEW_ORDER}") == [(1,)]
    assert "uncommitted_col" not in columns(lake.db_path, "stg_orders")
    assert "unpushed_col" not in columns(lake.db_path, "int_orders")
    assert {"order_id", "status"} <= columns(lake.db_path, "stg_orders")

    # The built SHA is on the record: audit events, the flow run's parameters, the run's summary.
    trail = audit.order(e for e in repo.audit_events() if e.request_id == RID)
    validated = next(e for e in trail if e.type == audit.REQUEST_VALIDATED)
    submitted = next(e for e in trail if e.type == audit.BATCH_SUBMITTED)
    assert validated.fields["approved_sha"] == submitted.fields["commit"] == approved
    (run,) = prefect_api.read_flow_runs_by_tag(prefect_server.api_url, execution.run_tag(RID))
    assert run.parameters["dbt_repo_commit"] == approved
    assert run.parameters["dbt_repo_url"] == repo.origin.resolve().as_uri()
    assert not any(str(v).startswith(str(tmp_path)) for k, v in run.parameters.items()
                   if k != "run_results_storage_path")  # no path of the runner's machine
    summary = json.loads((tmp_path / "runs" / run.id / "summary.json").read_text())
    assert summary["project"] == {"repo_url": repo.origin.resolve().as_uri(), "commit": approved,
                                  "path": "lakehouse"}


# ---- secrets -------------------------------------------------------------------------------

SECRET_RID = "2026-12-07-orders-secrets"
SECRETS = ("api-s3cret-1", "repo-s3cret-2", "hook-s3cret-3", "hook-s3cret-4")


class _Hook(BaseHTTPRequestHandler):
    bodies: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        # The body only: the request line is the webhook URL itself, which the receiver knows.
        type(self).bodies.append(self.rfile.read(n).decode(errors="replace"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[str]]]:
    _Hook.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_port
        yield f"http://hook:{SECRETS[2]}@127.0.0.1:{port}/alerts?token={SECRETS[3]}", _Hook.bodies
    finally:
        server.shutdown()


def test_credentials_in_urls_never_persist(
        prefect_server: PrefectServer, prefect_worker: PrefectWorker, lake: ExampleBuild,
        webhook: tuple[str, list[str]], tmp_path: Path) -> None:
    """Credentials in the API URL, the repository URL and the webhook URL: the run fails (the
    repository is unreachable), and none of them is in the audit branch, the artifacts, the logs,
    the commands' output or the alerts."""
    hook_url, alerts = webhook
    api = prefect_server.api_url.replace("http://", f"http://rescue:{SECRETS[0]}@")
    data = config(storage=tmp_path / "runs", deployment="rescue_secrets")
    data["repository"] = {"url": f"https://ci:{SECRETS[1]}@127.0.0.1:9/data/dbt.git?private_token={SECRETS[1]}"}
    data["notifications"] = {"on": ["failed", "needs_operator", "succeeded"], "retries": 0}
    repo = make_repo(tmp_path / "git", lake.project_dir, data,
                     env={**prefect_server.env, "PREFECT_API_URL": api, "RESCUE_WEBHOOK_URL": hook_url})
    repo.deploy(prefect_server.api_url, lake.db_path)
    repo.merge_request(SECRET_RID, REQUEST)

    outputs = [repo.rescue("apply", "--wait", "--poll", "1", "--timeout", "300")]
    outputs += [repo.rescue("status"), repo.rescue("log", SECRET_RID),
                repo.rescue("deploy", "--format", "json")]
    assert f"{SECRET_RID}: failed" in outputs[0].stdout, outputs[0].stdout + outputs[0].stderr[-3000:]
    assert alerts, "the failure alert was not sent"
    (run,) = prefect_api.read_flow_runs_by_tag(prefect_server.api_url, execution.run_tag(SECRET_RID))
    assert "127.0.0.1:9/data/dbt.git" in (run.state_message or "")  # the failed fetch, redacted

    audit_branch = git(repo.origin, "log", "-p", "refs/heads/rescue-audit", "--not", "refs/heads/main")
    texts = {"audit branch": audit_branch, "alerts": "\n".join(alerts),
             "flow run": json.dumps([run.parameters, run.state_message]),
             "worker log": prefect_worker.log_path.read_text(errors="replace")}
    texts.update({f"output {i}": o.stdout + o.stderr for i, o in enumerate(outputs)})
    for path in [*(tmp_path / "runs").rglob("*"), *(repo.runner / ".rescue").rglob("*")]:
        if path.is_file():
            texts[str(path.relative_to(tmp_path))] = path.read_text(errors="replace")
    assert any(SECRET_RID in t for t in texts.values())
    leaks = {where: s for where, text in texts.items() for s in SECRETS if s in text}
    assert leaks == {}
