"""`rescue new`: turn answers (prompts or flags) into a request file.

Each ``check_*`` function validates one answer the way the request schema and the policy will,
and raises ``ValueError`` with a message saying what to type instead, so the CLI can re-prompt
on the spot. ``render_request`` writes YAML by hand (strings as JSON, which YAML 1.2 reads
verbatim) so a reason such as ``no: NO`` can never turn into a boolean.
"""

from __future__ import annotations

import json
import re
import subprocess
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .request import ID_PATTERN

SCHEMA_ID = "../schema/rescue-request.v1.json"  # the modeline of a request in rescues/
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
REASON_MAX = 2000


@dataclass(frozen=True)
class Draft:
    """The answers for a new request (strings already checked)."""

    select: tuple[str, ...]
    reason: str
    requested_by: str
    ticket: str | None = None
    exclude: tuple[str, ...] = ()
    full_refresh: bool = False
    max_models: int | None = None
    window_daily: tuple[str, str] | None = None
    timezone: str | None = None
    expires: str | None = None


def _printable(value: str, what: str) -> str:
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") for c in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def check_selectors_text(value: str, field: str = "select", *, required: bool = True) -> tuple[str, ...]:
    """dbt selectors separated by spaces, checked like `rescue validate` checks them."""
    from .selection import check_selectors

    parts = tuple(dict.fromkeys(_printable(value, field).split()))
    if not parts:
        if required:
            raise ValueError(f"{field} must name at least one dbt selector, e.g. int_orders+ or tag:finance")
        return ()
    findings = check_selectors(parts, field=field, path="", line=None)
    if findings:
        raise ValueError(findings[0].message)
    return parts


def check_reason(value: str, min_length: int = 10) -> str:
    """Why the rescue is needed: at least ``min_length`` characters (the policy's), one line."""
    text = " ".join(_printable(value, "the reason").split())
    if len(text) < min_length:
        raise ValueError(f"the reason needs at least {min_length} characters ({len(text)} given): "
                         "say what broke and what this rerun fixes")
    if len(text) > REASON_MAX:
        raise ValueError(f"the reason may have at most {REASON_MAX} characters")
    return text


def check_ticket(value: str | None, *, required: bool = False) -> str | None:
    """An issue key or URL; required when the policy says so."""
    text = _printable((value or "").strip(), "the ticket")
    if not text:
        if required:
            raise ValueError("this repository's policy requires a ticket (an issue key or URL)")
        return None
    if len(text) > 500 or any(c.isspace() for c in text):
        raise ValueError("the ticket must be one issue key or URL without spaces, e.g. DATA-1234")
    return text


def check_requested_by(value: str) -> str:
    text = " ".join(_printable(value, "requested_by").split())
    if not text or len(text) > 200:
        raise ValueError("requested_by must name who asks (1 to 200 characters), e.g. jane@example.com")
    return text


def check_daily_window(value: str) -> tuple[str, str]:
    """``HH:MM-HH:MM`` in local time; an end at or before the start crosses midnight."""
    start, sep, end = value.strip().partition("-")
    if not sep or not _CLOCK.match(start.strip()) or not _CLOCK.match(end.strip()):
        raise ValueError(f"'{value}' is not a daily window: write START-END in 24-hour time, "
                         "e.g. 01:00-05:00")
    return start.strip(), end.strip()


def check_max_models(value: str) -> int | None:
    """A batch size from 1 to 10000, or None for an empty answer (no split)."""
    if not value.strip():
        return None
    try:
        n = int(value.strip())
    except ValueError:
        raise ValueError(f"'{value}' is not a whole number") from None
    if not 1 <= n <= 10000:
        raise ValueError("give a number from 1 to 10000, or nothing for no split")
    return n


def check_timezone(value: str) -> str:
    from .windows import is_valid_timezone

    if not is_valid_timezone(value.strip()):
        raise ValueError(f"'{value}' is not an IANA time zone name, e.g. Europe/Berlin or UTC")
    return value.strip()


def check_expires(value: str) -> str:
    try:
        date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"'{value}' is not a date YYYY-MM-DD") from None
    return value.strip()


def slugify(text: str, limit: int = 50) -> str:
    """Lower-case words joined by '-', for file names (``int_orders+`` -> ``int-orders``)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "rescue"


def default_slug(draft: Draft) -> str:
    """A readable default from the first selector (and the kind of rescue)."""
    first = draft.select[0].split(":")[-1] if draft.select else "rescue"
    return slugify(first + (" full refresh" if draft.full_refresh else ""))


def request_path(requests_dir: Path, day: date, slug: str) -> Path:
    """``rescues/<day>-<slug>.yaml``, with ``-2``, ``-3``... if taken; always a valid request id."""
    base = f"{day.isoformat()}-{slugify(slug)}"[:76]
    for n in range(1, 1000):
        stem = base if n == 1 else f"{base}-{n}"
        if not ID_PATTERN.match(stem):
            raise ValueError(f"'{stem}' is not a valid request id")
        candidate = requests_dir / f"{stem}.yaml"
        if not candidate.exists() and not candidate.with_suffix(".yml").exists():
            return candidate
    raise ValueError(f"too many requests named {base}-*")


def git_identity(cwd: Path) -> str | None:
    """``Name <email>`` from git config user.name / user.email (either alone if only one is set)."""
    def get(key: str) -> str:
        try:
            out = subprocess.run(["git", "config", "--get", key], cwd=cwd, capture_output=True,
                                 text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    name, email = get("user.name"), get("user.email")
    if name and email:
        return f"{name} <{email}>"
    return name or email or None


def schema_ref(request_file: Path, repo_root: Path) -> str:
    """The modeline target: the repository's schema/ copy (`rescue init` and `rescue schema
    --write` place it), relative to the request file."""
    import os

    local = repo_root / "schema" / "rescue-request.v1.json"
    return Path(os.path.relpath(local, request_file.parent)).as_posix()


def _s(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _selectors_yaml(parts: tuple[str, ...]) -> str:
    return _s(parts[0]) if len(parts) == 1 else "\n" + "\n".join(f"  - {_s(p)}" for p in parts)


def render_request(draft: Draft, schema: str) -> str:
    """The request file text, with the yaml-language-server modeline first."""
    lines = [f"# yaml-language-server: $schema={schema}",
             "# Written by `rescue new`. Check: rescue validate. Fields: docs/request-reference.md",
             "version: 1",
             f"reason: {_s(draft.reason)}",
             f"requested_by: {_s(draft.requested_by)}"]
    if draft.ticket:
        lines.append(f"ticket: {_s(draft.ticket)}")
    lines.append(f"select: {_selectors_yaml(draft.select)}")
    if draft.exclude:
        lines.append(f"exclude: {_selectors_yaml(draft.exclude)}")
    if draft.full_refresh:
        lines.append("full_refresh: true")
    if draft.window_daily is not None:
        start, end = draft.window_daily
        lines += ["window:", "  daily:", f"    start: {_s(start)}", f"    end: {_s(end)}",
                  f"  timezone: {_s(draft.timezone or '')}"]  # the CLI insists on a zone: never silently UTC
    if draft.max_models is not None:
        lines += ["batches:", f"  max_models: {draft.max_models}"]
    if draft.expires:
        lines.append(f"expires: {_s(draft.expires)}")
    return "\n".join(lines) + "\n"
