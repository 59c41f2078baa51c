"""Which files are rescue requests: the paths given, or every YAML file in the requests folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import RescueError

REQUEST_SUFFIXES = (".yaml", ".yml")


def request_files(paths: Sequence[Path], default_dir: Path) -> list[Path]:
    """Expand folders (non-recursively) into their *.yaml/*.yml files, sorted, without duplicates.

    A named file is taken whatever its suffix (the user asked for it); a missing path
    is a usage error (exit 2).
    """
    roots = list(paths) or [default_dir]
    seen: set[Path] = set()
    out: list[Path] = []
    for root in roots:
        if root.is_dir():
            candidates = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in REQUEST_SUFFIXES)
        elif root.exists():
            candidates = [root]
        elif not paths:
            candidates = []  # no requests folder yet: nothing to validate
        else:
            raise RescueError(f"{root}: no such file or folder",
                              hint="check the path (`ls rescues/` lists the request files)")
        for c in candidates:
            key = c.resolve()
            if key not in seen:
                seen.add(key)
                out.append(c)
    return out


def display_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (findings and CI annotations use these)."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
