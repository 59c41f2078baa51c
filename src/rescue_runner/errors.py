"""The one user-facing error class. The CLI boundary turns it into exit code 2."""

from __future__ import annotations


class RescueError(Exception):
    """A usage, configuration or environment problem the user can fix.

    The message names the file (and line where known) and says what to do.
    Findings about request content are not errors: they are ``Finding`` values.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        from .redact import redact  # error texts quote URLs and tool output: no credential in them

        message = redact(message)
        super().__init__(message)
        self.message = message
        self.hint = redact(hint) if hint else hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


# ---- typed errors the adapters raise ---------------------------------------------------------
# Still RescueErrors (their messages are worded for people, exit code 2 at the CLI boundary),
# but typed, so the core decides by class and never by matching message text.

class PrefectUnreachable(RescueError):
    """The Prefect API did not answer, or answered unhealthy."""


class NotFoundError(RescueError):
    """Something the caller named does not exist where it was looked for."""


class RunNotFound(NotFoundError):
    """A flow run id unknown to the Prefect API (deleted, or another server)."""


class DeploymentNotFound(NotFoundError):
    """The configured deployment does not exist on the Prefect server."""
