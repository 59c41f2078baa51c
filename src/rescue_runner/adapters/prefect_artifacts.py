"""Markdown artifacts on flow runs: attach one and read them back (Prefect server or local run record).

The submitter attaches a run's context artifact right after creating the run: on the Prefect
server (``api_url``), or in the local run record of embedded mode (``local_home``, see
``local_runs.py``; no prefect import on that path). Attaching is best effort for the caller:
the run exists either way, so a failure is reported, never raised into the runner
(``attach_markdown`` returns it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..redact import redact
from . import local_runs


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact as the API (or the local run record) returns it."""

    id: str
    key: str | None
    type: str | None
    description: str | None
    data: str
    flow_run_id: str | None


def _where(api_url: str | None, local_home: Path | None) -> None:
    if (api_url is None) == (local_home is None):
        raise ValueError("give exactly one of api_url (a Prefect server) and local_home (embedded mode)")


def attach_markdown(flow_run_id: str, markdown: str, *, key: str | None, description: str,
                    api_url: str | None = None, local_home: Path | None = None) -> str | None:
    """Create a markdown artifact on ``flow_run_id``; None on success, else why it failed (redacted)."""
    _where(api_url, local_home)
    try:
        if local_home is not None:
            local_runs.attach_markdown(local_home, flow_run_id, markdown, key=key, description=description)
        else:
            _attach_on_server(str(api_url), flow_run_id, markdown, key=key, description=description)
    except Exception as exc:  # the run exists and runs without it
        return redact(f"{type(exc).__name__}: {exc}")
    return None


def _attach_on_server(api_url: str, flow_run_id: str, markdown: str, *, key: str | None,
                      description: str) -> None:
    from uuid import UUID

    from prefect.client.schemas.actions import ArtifactCreate

    from .prefect_api import _client, _retry

    with _client(api_url) as client:
        _retry(lambda: client.create_artifact(ArtifactCreate(
            key=key, type="markdown", description=description, data=markdown,
            flow_run_id=UUID(flow_run_id))))


def read_markdown(flow_run_id: str, *, api_url: str | None = None,
                  local_home: Path | None = None) -> tuple[ArtifactInfo, ...]:
    """The artifacts of one flow run, oldest first."""
    _where(api_url, local_home)
    if local_home is not None:
        return tuple(ArtifactInfo(id=f"{flow_run_id}/{i}", key=a.get("key"), type=a.get("type"),
                                  description=a.get("description"), data=str(a.get("data") or ""),
                                  flow_run_id=flow_run_id)
                     for i, a in enumerate(local_runs.artifacts(local_home, flow_run_id)))
    from uuid import UUID

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    from .prefect_api import _client, _retry

    with _client(str(api_url)) as client:
        arts: Any = _retry(lambda: client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])),
            sort=ArtifactSort.CREATED_DESC, limit=50))
    return tuple(reversed([ArtifactInfo(id=str(a.id), key=a.key, type=a.type, description=a.description,
                              data=a.data if isinstance(a.data, str) else str(a.data),
                              flow_run_id=str(a.flow_run_id) if a.flow_run_id else None) for a in arts]))
