"""The ``transform_and_catalog`` Prefect flow: ``dbt build`` of one batch, then its catalog.

Runs on a Prefect worker (deployment ``dbt_rerun``). The work itself is
``flows/batch.py``'s ``build_batch`` (prefect-free, also what embedded mode calls
directly); this wrapper gives it the run's logger and id and attaches the result
artifact to the flow run. Artifacts are stored under
``<run_results_storage_path>/<flow run id>/``.

A failed model, a failing test or a partially successful microbatch model fails the
flow run; the message names the failing nodes. A failed catalog refresh does not.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow, get_run_logger

from rescue_runner.flows.artifacts import publish_result
from rescue_runner.flows.batch import build_batch

FLOW_NAME = "transform_and_catalog"


@flow(name=FLOW_NAME, persist_result=False)
def transform_and_catalog(
    dbt_selects: dict[str, str],
    run_results_storage_path: str,
    dbt_project_path: str | None = None,
    dbt_repo_url: str | None = None,
    dbt_repo_commit: str | None = None,
    dbt_repo_token_secret: str | None = None,
    full_refresh: bool = False,
    event_time_start: str | None = None,
    event_time_end: str | None = None,
    profiles_dir: str | None = None,
    target: str | None = None,
    fast_test_edges: bool = True,
) -> dict[str, Any]:
    """Build one batch with ``dbt build`` and refresh its catalog; return the summary.

    ``dbt_selects``: ``{"run"|"build"|"select": "<selectors>", "exclude": "<selectors>"}``.
    With ``dbt_repo_url`` the commit ``dbt_repo_commit`` (a full SHA) is fetched into
    the worker's cache and ``dbt_project_path`` (and a relative ``profiles_dir``) are
    folders inside it; otherwise ``dbt_project_path`` is a local tree of that commit.
    ``profiles_dir`` and ``target`` come from rescue.yaml, never from a request.
    """
    log = get_run_logger()
    return build_batch(
        log, _flow_run_id(), dbt_selects=dbt_selects, run_results_storage_path=run_results_storage_path,
        dbt_project_path=dbt_project_path, dbt_repo_url=dbt_repo_url, dbt_repo_commit=dbt_repo_commit,
        dbt_repo_token_secret=dbt_repo_token_secret, full_refresh=full_refresh,
        event_time_start=event_time_start, event_time_end=event_time_end, profiles_dir=profiles_dir,
        target=target, fast_test_edges=fast_test_edges, on_end=lambda summary: publish_result(summary, log))


def _flow_run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())
