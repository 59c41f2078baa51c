"""Markdown artifacts on flow runs: attach one (server or embedded API) and read them back.

The submitter attaches a run's context artifact right after creating the run (server
mode) or right after running it in-process (embedded mode: the run is created and run in
one call). Attaching is best effort for the caller: the run exists either way, so a
failure is reported, never raised into the runner (``attach_markdown`` returns it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..redact import redact


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact as the API returns it."""

    id: str
    key: str | None
    type: str | None
    description: str | None
    data: str
    flow_run_id: str | None


@contextlib.contextmanager
def _client(api_url: str | None, prefect_home: Path | None) -> Iterator[Any]:
    if api_url is not None:
        from .prefect_api import _client as server_client

        with server_client(api_url) as client:
            yield client
    else:
        from .prefect_embedded import _embedded_client

        if prefect_home is None:
            raise ValueError("embedded mode needs prefect_home")
        with _embedded_client(prefect_home) as client:
            yield client


def attach_markdown(flow_run_id: str, markdown: str, *, key: str | None, description: str,
                    api_url: str | None = None, prefect_home: Path | None = None) -> str | None:
    """Create a markdown artifact on ``flow_run_id``; None on success, else why it failed (redacted)."""
    from uuid import UUID

    from prefect.client.schemas.actions import ArtifactCreate

    from .prefect_api import _retry

    try:
        with _client(api_url, prefect_home) as client:
            _retry(lambda: client.create_artifact(ArtifactCreate(
                key=key, type="markdown", description=description, data=markdown,
                flow_run_id=UUID(flow_run_id))))
    except Exception as exc:  # the run exists and runs without it
        return redact(f"{type(exc).__name__}: {exc}")
    return None


def read_markdown(flow_run_id: str, *, api_url: str | None = None,
                  prefect_home: Path | None = None) -> tuple[ArtifactInfo, ...]:
    """The artifacts of one flow run, oldest first."""
    from uuid import UUID

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    from .prefect_api import _retry

    with _client(api_url, prefect_home) as client:
        arts = _retry(lambda: client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])),
            sort=ArtifactSort.CREATED_DESC, limit=50))
    return tuple(reversed([ArtifactInfo(id=str(a.id), key=a.key, type=a.type, description=a.description,
                              data=a.data if isinstance(a.data, str) else str(a.data),
                              flow_run_id=str(a.flow_run_id) if a.flow_run_id else None) for a in arts]))
