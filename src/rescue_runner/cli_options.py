"""Option parsing shared by every command module (the CLI's only shared helpers)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import click


def instant(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 date-time with offset (``2026-11-23T22:00:00+01:00``, ``...Z``) as UTC.

    A blank value (an empty environment variable) means "not given".
    """
    if value is None or not value.strip():
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"'{value}' is not an ISO 8601 date-time") from None
    if at.tzinfo is None:
        raise click.BadParameter(f"'{value}' has no offset: add Z for UTC or +HH:MM")
    return at.astimezone(UTC)


def format_option(renderers: Mapping[str, object]) -> click.Choice:
    """The ``--format`` choices: exactly the names of a renderer registry."""
    return click.Choice(tuple(renderers))
