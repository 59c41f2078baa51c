"""Reading runs of the embedded (in-process) mode back from its local Prefect database.

``execution.submit_batch`` runs a batch in-process against Prefect's temporary local API
with state in ``$PREFECT_HOME`` (``.rescue/prefect`` by default). A runner that starts after
a crash looks there for the runs its predecessor made, with the same settings. Nothing here
starts a server when that database does not exist yet (no run was ever made).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .prefect_api import FlowRunInfo, embedded_setting_updates


@contextlib.contextmanager
def _embedded_client(home: Path) -> Iterator[Any]:
    os.environ.setdefault("PREFECT_HOME", str(home))  # before the first prefect import, as execution does
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates=embedded_setting_updates(home),
                            restore_defaults={PREFECT_API_URL}), get_client(sync_client=True) as client:
        yield client


def has_database(home: Path) -> bool:
    return (home / "prefect.db").is_file()


def find_runs(home: Path, tag: str) -> tuple[FlowRunInfo, ...]:
    """Embedded flow runs carrying ``tag``, oldest first (none when there is no database yet)."""
    if not has_database(home):
        return ()
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    with _embedded_client(home) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200)
    return tuple(_info(r) for r in runs)


def read_run(home: Path, flow_run_id: str) -> FlowRunInfo | None:
    """One embedded run, or None when the database does not know it."""
    if not has_database(home):
        return None
    from uuid import UUID

    from prefect.exceptions import ObjectNotFound

    with _embedded_client(home) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return None
    return _info(run)


def _info(run: Any) -> FlowRunInfo:
    state = run.state
    return FlowRunInfo(
        id=str(run.id), name=run.name, deployment_id=str(run.deployment_id) if run.deployment_id else None,
        parameters=dict(run.parameters or {}), tags=tuple(run.tags or ()),
        state_type=state.type.value if state else None, state_name=state.name if state else None,
        state_message=state.message if state else None, idempotency_key=run.idempotency_key,
        work_queue_name=run.work_queue_name, expected_start_time=run.expected_start_time)
