"""Safety checks on dbt selector strings, before dbt sees them.

dbt's own parser decides what a selector *means* (see adapters/dbt.py); this
module only refuses selectors that are unsafe or that dbt would misread
silently. Codes:

| code  | problem                                                                 |
|-------|-------------------------------------------------------------------------|
| RR202 | a selector starts with ``-`` (dbt would read it as a command-line flag)  |
| RR203 | a character outside the selector alphabet (quotes, ``$``, ``;``, ``{``)  |
| RR204 | a ``path:``/``file:`` selector that is absolute or leaves the project    |

The selector alphabet (``dbt_args.SAFE_SELECTOR``, the same one the flow enforces) is
letters, digits and ``_ . : + @ , * ? / - = [ ]``:
enough for names, fqn globs, methods, graph operators, intersections and
``config.meta.x:y`` values, and nothing a shell, Jinja or YAML would treat
specially.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath

from .dbt_args import SAFE_SELECTOR as _ALLOWED
from .model import Finding, Severity

_GRAPH_PREFIX = re.compile(r"^(@|\d*\+)")
_GRAPH_SUFFIX = re.compile(r"\+\d*$")
_PATH_METHODS = ("path", "file")


def selector_atoms(selector: str) -> list[tuple[str | None, str]]:
    """Split one selector argument into (method, value) atoms.

    ``"+path:models/x+,tag:a"`` → ``[("path", "models/x"), ("tag", "a")]``.
    Graph operators are stripped; a bare value has method None.
    """
    atoms: list[tuple[str | None, str]] = []
    for part in selector.split(","):
        core = _GRAPH_SUFFIX.sub("", _GRAPH_PREFIX.sub("", part))
        if ":" in core:
            method, _, value = core.partition(":")
            atoms.append((method.split(".")[0], value))
        else:
            atoms.append((None, core))
    return atoms


def _escapes_project(value: str) -> bool:
    if not value or value.startswith(("/", "~", "\\")):
        return bool(value)
    depth = 0
    for part in PurePosixPath(value).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in (".", ""):
            depth += 1
    return False


def check_selectors(
    selectors: Sequence[str], *, field: str, path: str, line: int | None
) -> list[Finding]:
    """Findings for unsafe selector arguments of one request field (``select``/``exclude``)."""
    findings: list[Finding] = []

    def add(code: str, message: str) -> None:
        findings.append(Finding(code, Severity.ERROR, message, path, line))

    for sel in selectors:
        if sel.startswith("-"):
            add("RR202", f"{field}: '{sel}' starts with '-' and would be read as a dbt flag; "
                "requests may only hold selectors (target, vars and flags come from rescue.yaml)")
            continue
        if not _ALLOWED.match(sel):
            bad = sorted({c for c in sel if not _ALLOWED.match(c)})
            shown = " ".join(repr(c) for c in bad)
            add("RR203", f"{field}: '{sel}' contains characters that are not allowed in a selector "
                f"({shown}); use dbt node names, methods (tag:, path:, config.x:) and graph operators only")
            continue
        for method, value in selector_atoms(sel):
            if method in _PATH_METHODS and _escapes_project(value):
                add("RR204", f"{field}: '{sel}' points outside the dbt project; "
                    "use a path relative to the project root such as path:models/marts")
    return findings
