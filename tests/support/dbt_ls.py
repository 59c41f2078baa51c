"""Run real `dbt ls` (dbt's own command, in-process, on a preloaded manifest) for differential tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STUB_PROFILE = """\
stub:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: ":memory:"
"""


def make_stub_project(dest: Path, project_name: str) -> Path:
    """A dbt project holding only dbt_project.yml and a profile: enough to `dbt ls` a manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "dbt_project.yml").write_text(
        f"name: {project_name}\nversion: '1.0'\nprofile: stub\nconfig-version: 2\n", encoding="utf-8")
    (dest / "profiles.yml").write_text(STUB_PROFILE, encoding="utf-8")
    return dest


def dbt_ls(manifest: Any, project_dir: Path, profiles_dir: Path, select: Sequence[str],
           exclude: Sequence[str] = (), state: Path | None = None) -> set[str]:
    """unique_ids printed by `dbt ls --select S --exclude E --resource-type model`."""
    from dbt.cli.main import dbtRunner

    args = ["ls", "--select", *select, "--resource-type", "model", "--output", "json",
            "--output-keys", "unique_id", "--quiet", "--project-dir", str(project_dir),
            "--profiles-dir", str(profiles_dir)]
    if exclude:
        args += ["--exclude", *exclude]
    if state is not None:
        args += ["--state", str(state)]
    res = dbtRunner(manifest=manifest).invoke(args)
    assert res.success, f"dbt ls failed for {select!r}: {res.exception}"
    return {json.loads(line)["unique_id"] for line in res.result}
