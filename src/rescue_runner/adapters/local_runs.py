"""The local run record of embedded mode: one JSON file per batch run, no Prefect involved.

Without ``PREFECT_API_URL`` a batch runs in the runner's own process. Its run is recorded in
``<home>/<run id>.json`` (``.rescue/runs-local`` of the repository): written with state RUNNING
before the batch starts, rewritten COMPLETED or FAILED when it ends. A runner killed in between
leaves a RUNNING record, which the next runner reads as an orphan (adopted, never rerun).
Every write is atomic (a temporary file in the same folder, then a rename), so a reader sees
the old record or the new one, never half of one.

A record that cannot be read (not JSON, not a run) is a ``RescueError`` naming the file and what
to do, from ``find_runs`` and ``read_run`` alike: skipping it could hide the run of a batch and
let it run twice. Temporary files a killed writer left (``.tmp-*``) are not records and are ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import RescueError
from ..redact import redact
from .prefect_api import FlowRunInfo

RUNNING, COMPLETED, FAILED = "RUNNING", "COMPLETED", "FAILED"
_SUFFIX = ".json"
_HINT = ("an embedded batch's run is recorded there; restore the file, or move it away once `rescue status` "
         "shows no batch running with this run id")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _valid(run_id: str) -> bool:
    try:
        return str(uuid.UUID(run_id)) == run_id
    except ValueError:
        return False


def _path(home: Path, run_id: str) -> Path:
    if not _valid(run_id):
        raise RescueError(f"{run_id!r} is not a run id of the local run record")
    return home / f"{run_id}{_SUFFIX}"


def _existing(home: Path, run_id: str) -> Path | None:
    """The record's file, or None (also for an id that cannot be one)."""
    path = home / f"{run_id}{_SUFFIX}"
    return path if _valid(run_id) and path.is_file() else None


def _write(home: Path, record: Mapping[str, Any]) -> None:
    """Write a record atomically: readers see the previous version or this one."""
    home.mkdir(parents=True, exist_ok=True)
    text = redact(json.dumps(record, indent=2, sort_keys=True, default=str)) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=home)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, _path(home, str(record["id"])))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load(path: Path) -> dict[str, Any]:
    """One record; RescueError naming the file when it is not a readable run record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RescueError(f"{path}: unreadable local run record ({exc})", hint=_HINT) from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("id", "name")):
        raise RescueError(f"{path}: not a local run record (no id or name)", hint=_HINT)
    return data


def start(home: Path, *, name: str, tags: Sequence[str], parameters: Mapping[str, Any],
          idempotency_key: str) -> str:
    """Record a new run in state RUNNING (before it starts) and return its id."""
    run_id = str(uuid.uuid4())
    now = _now()
    _write(home, {"id": run_id, "name": name, "tags": list(tags), "parameters": dict(parameters),
                  "idempotency_key": idempotency_key, "state_type": RUNNING, "state_name": "Running",
                  "message": None, "created": now, "started": now, "ended": None,
                  "pid": os.getpid(), "host": socket.gethostname(), "artifacts": []})
    return run_id


def finish(home: Path, run_id: str, state_type: str, message: str | None = None) -> None:
    """Record the run's final state (COMPLETED or FAILED) and message (redacted)."""
    record = _load(_path(home, run_id))
    record.update(state_type=state_type, state_name=state_type.title(),
                  message=redact(message) if message else None, ended=_now())
    _write(home, record)


def attach_markdown(home: Path, run_id: str, markdown: str, *, key: str | None, description: str) -> None:
    """Add a markdown artifact to the run's record."""
    record = _load(_path(home, run_id))
    record.setdefault("artifacts", []).append({"key": key, "type": "markdown", "description": description,
                                               "data": markdown, "created": _now()})
    _write(home, record)


def artifacts(home: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's artifacts, oldest first (empty when there is no such record)."""
    path = _existing(home, run_id)
    if path is None:
        return []
    return [a for a in _load(path).get("artifacts") or () if isinstance(a, dict)]


def find_runs(home: Path, tag: str) -> tuple[FlowRunInfo, ...]:
    """Recorded runs carrying ``tag``, oldest first (RescueError on an unreadable record)."""
    runs = []
    for path in sorted(home.glob(f"*{_SUFFIX}")) if home.is_dir() else ():
        if path.name.startswith("."):
            continue
        data = _load(path)
        if tag in (data.get("tags") or ()):
            runs.append(_info(data))
    oldest = datetime.min.replace(tzinfo=UTC)
    return tuple(sorted(runs, key=lambda r: (r.expected_start_time or oldest, r.id)))


def read_run(home: Path, run_id: str) -> FlowRunInfo | None:
    """One recorded run, or None when there is no record of it."""
    path = _existing(home, run_id)
    return None if path is None else _info(_load(path))


def record(home: Path, run_id: str) -> dict[str, Any] | None:
    """The raw record (pid, host, times, artifacts ...), or None."""
    path = _existing(home, run_id)
    return None if path is None else _load(path)


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _info(data: Mapping[str, Any]) -> FlowRunInfo:
    return FlowRunInfo(
        id=str(data["id"]), name=str(data["name"]), deployment_id=None,
        parameters=dict(data.get("parameters") or {}), tags=tuple(data.get("tags") or ()),
        state_type=data.get("state_type"), state_name=data.get("state_name"),
        state_message=data.get("message"), idempotency_key=data.get("idempotency_key"),
        work_queue_name=None, expected_start_time=_time(data.get("created")),
        start_time=_time(data.get("started")))
