"""A flow shaped like the article's ``transform_and_catalog`` template (NOT rescue-runner's flow).

The team's own deployment: it clones ``dbt_repo_url`` at the branch ``dbt_repo_branch``,
runs ``dbt run --select <dbt_selects["run"]>`` in ``dbt_project_path`` (the string is
passed to dbt as is, so dbt flags inside it reach dbt), and stores ``run_results.json``
under ``run_results_storage_path/<flow run id>/``. Tests deploy it from this folder and
drive it through rescue-runner's ``prefect.mapping``; ``received.json`` beside the run
results records the parameters exactly as the flow got them.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run


@flow(name="article_transform_and_catalog", persist_result=False)
def article_transform_and_catalog(
    dbt_selects: dict[str, str],
    dbt_repo_url: str,
    dbt_repo_branch: str = "main",
    dbt_repo_token_secret: str | None = None,
    dbt_project_path: str = ".",
    run_results_storage_path: str = "run-results",
    run_results_storage_credentials_secret: str | None = None,
) -> dict[str, Any]:
    from dbt.cli.main import dbtRunner

    log = get_run_logger()
    out = Path(run_results_storage_path) / str(flow_run.id)
    out.mkdir(parents=True, exist_ok=True)
    received = {"dbt_selects": dbt_selects, "dbt_repo_url": dbt_repo_url, "dbt_repo_branch": dbt_repo_branch,
                "dbt_project_path": dbt_project_path, "tags": list(flow_run.tags or ())}
    (out / "received.json").write_text(json.dumps(received, indent=2), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="article-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", dbt_repo_branch, "--",
                        dbt_repo_url, str(clone)], check=True)
        project = clone / dbt_project_path
        args = ["run", "--select", *shlex.split(dbt_selects["run"]), "--project-dir", str(project),
                "--profiles-dir", str(project), "--target-path", str(Path(tmp) / "target")]
        log.info("dbt %s", " ".join(args))
        res = dbtRunner().invoke(args)
        produced = Path(tmp) / "target" / "run_results.json"
        if produced.is_file():
            (out / "run_results.json").write_text(produced.read_text(encoding="utf-8"), encoding="utf-8")
    if not res.success:
        raise RuntimeError(f"dbt run failed: {res.exception}")
    return received
