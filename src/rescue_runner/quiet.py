"""Quiet by default: when rescue-runner runs dbt in its own process (embedded mode), dbt's output
and the batch's log lines go to a log file and the terminal shows rescue-runner's own lines only.

``capture(path)`` points the process's file descriptors 1 and 2 at ``path`` (so dbt's log
lines, Prefect's console handler, warnings, and what native libraries print at interpreter
exit, such as nanobind's leak report, all land there) and keeps the terminal for
``terminal()``. It is never undone: shutdown noise after the command ends goes to the file too.
``telemetry_off()`` sets the documented opt-outs before dbt or Prefect is imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}

_terminal: dict[str, TextIO] = {}
_log: list[Path] = []


def telemetry_off() -> None:
    """Opt out of dbt's and Prefect's telemetry in this process unless the user chose otherwise."""
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


def capture(path: Path) -> Path:
    """Send everything written to stdout/stderr (fd 1 and 2) to ``path`` from now on."""
    if _log:
        return _log[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    _terminal["out"] = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    _terminal["err"] = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _log.append(path)
    return path


def terminal(err: bool = False) -> TextIO:
    """Where rescue-runner's own lines go: the terminal, even while output is captured."""
    stream = _terminal.get("err" if err else "out")
    if stream is not None:
        return stream
    return sys.stderr if err else sys.stdout


def log_file() -> Path | None:
    """The capture file, if output is captured."""
    return _log[0] if _log else None
