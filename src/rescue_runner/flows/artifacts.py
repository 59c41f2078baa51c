"""The result artifact of a batch: what it rebuilt, what failed and what dbt said first.

``publish_result`` is called by the ``transform_and_catalog`` flow when it ends (success or
failure), inside the flow run, so the artifact lands on that run. Embedded mode stores the same
markdown (``result_markdown``) in the local run record instead. Never fails the run: the models
are built (or not) whatever happens to the artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rescue_runner.reporting.prefect_run import artifact_key, result_markdown


def rebuilt_nodes(res: Any) -> list[str]:
    """Unique ids of the models dbt built successfully in this invocation."""
    out = []
    for r in getattr(res.result, "results", None) or []:
        status = str(getattr(r.status, "value", r.status))
        if status == "success" and getattr(r.node, "resource_type", None) in ("model", "snapshot", "seed"):
            out.append(str(r.node.unique_id))
    return out


def publish_result(summary: Mapping[str, Any], log: Any = None) -> None:
    """Attach the result artifact to the current flow run (best effort)."""
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.runtime import flow_run

        request = next((t.split(":", 1)[1] for t in (flow_run.tags or ()) if t.startswith("rescue:")), None)
        create_markdown_artifact(markdown=result_markdown(summary),
                                 key=artifact_key(request, "result") if request else None,
                                 description="rescue batch result")
    except Exception as exc:
        if log is not None:
            log.warning("could not attach the result artifact: %s: %s", type(exc).__name__, exc)
