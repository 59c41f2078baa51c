"""The post-merge guard end to end: real git (bare origin, dev and runner clones), the example
project, production's state manifest, a local webhook, embedded `rescue apply`.

A merge changes int_orders.sql with no rescue request: the next `rescue apply` reports it stale
on main and alerts once, with a request that validates as it is; once that request has run,
the notice is gone.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
from support.example import ExampleBuild
from support.prefect_server import base_env
from support.rescue_repo import RescueRepo, config, git, make_repo
from support.webhook import serve_hook

pytestmark = pytest.mark.slow


def embedded_apply(repo: RescueRepo, log: Path) -> str:
    """`rescue apply` in embedded mode (the batch runs in the runner's process); its output, also
    kept in ``log``."""
    proc = repo.rescue("apply", timeout=600)
    log.write_text(proc.stdout + proc.stderr)
    return log.read_text()


def test_a_merge_without_a_rebuild_is_stale_on_main_until_a_request_covers_it(
        example_copy: ExampleBuild, tmp_path: Path) -> None:
    state = tmp_path / "prod-state"
    state.mkdir()
    shutil.copy(example_copy.manifest_path, state / "manifest.json")  # what production last built
    cfg = config(storage=tmp_path / "runs")
    cfg["dbt"]["state"] = str(state)
    cfg["notifications"] = {"webhook_url_env": "RESCUE_TEST_WEBHOOK", "on": ["stale_on_main"],
                            "timeout_seconds": 2}
    with serve_hook() as hook:
        env = base_env({"LAKEHOUSE_DB": str(example_copy.db_path), "DBT_QUIET": "true",
                        "RESCUE_TEST_WEBHOOK": hook.url})
        repo = make_repo(tmp_path / "git", example_copy.project_dir, cfg, env=env)
        quiet = repo.rescue("apply")
        assert quiet.returncode == 0 and "stale on main" not in quiet.stdout + quiet.stderr
        assert hook.received == []

        # A pull request changed int_orders and was merged; nobody asked for a rebuild.
        sql = repo.dev / "lakehouse" / "models" / "intermediate" / "int_orders.sql"
        sql.write_text(sql.read_text() + "\n-- refunds are counted once (DATA-1500)\n")
        git(repo.dev, "commit", "-qam", "int_orders: count refunds once")
        git(repo.dev, "push", "-q", "origin", "main")
        change = git(repo.dev, "rev-parse", "HEAD").strip()

        first = repo.rescue("apply")
        assert f"stale on main since {change[:12]}: int_orders; alert sent" in first.stdout, first.stderr
        again = repo.rescue("apply")  # the next pass: still stale, but the alert fired already
        assert "alert sent" not in again.stdout
        assert len(hook.received) == 1
        status = repo.rescue("status").stdout
        assert re.search(rf"int_orders: stale on main since {change[:12]}, \d+ min \(\+7 downstream", status)

        payload = hook.received[0]
        text = html.unescape(payload["blocks"][0]["text"]["text"])
        assert "int_orders changed on main in commit" in text and change[:12] in text
        path = re.search(r"Commit this request as (rescues/[\w.-]+\.yaml)", text)
        assert path is not None, text
        body = html.unescape(payload["blocks"][-2]["text"]["text"]).strip("`\n")
        assert "select: \"int_orders+\"" in body and change[:12] in body
        assert "# plan preview" in body and "# plan " in body  # the plan it would run
        # Ready to commit as it is: the whole body (request + commented preview) validates.
        (repo.dev / path.group(1)).write_text(body + "\n")
        valid = repo.rescue("validate", path.group(1), cwd=repo.dev)
        assert valid.returncode == 0, valid.stdout + valid.stderr

        repo.merge_request(Path(path.group(1)).stem, body + "\n")
        done = embedded_apply(repo, tmp_path / "apply.log")  # the batch runs in this pass
        assert "succeeded" in done, done[-3000:]
        after = repo.rescue("apply")  # the next pass (nothing pending): the guard sees it covered
        assert "warning: post-merge guard" not in done + after.stdout + after.stderr, done[-3000:]
        status = repo.rescue("status").stdout
        # The notice is gone, and no model nobody changed is reported (the branch side now comes from
        # a cached parse, compared with the same config keys as production's manifest.json).
        assert "stale on main" not in status, status
        alerts = [p for p in hook.received if "int_orders changed on main" in html.unescape(json.dumps(p))]
        assert len(alerts) == 1  # no new alert for int_orders
