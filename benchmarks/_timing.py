"""What the benchmark scripts share: timing a whole command in a fresh process, printing samples."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Collection, Sequence
from pathlib import Path


def timed_run(cmd: Sequence[str], env: dict[str, str], cwd: Path,
              ok: Collection[int] = (0,)) -> tuple[float, str]:
    """Wall time and stdout of ``cmd``; exits with its output when its exit code is not in ``ok``."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode not in ok:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def fmt(values: Sequence[float]) -> str:
    """Samples as ``[1.23, 1.25]``."""
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"
