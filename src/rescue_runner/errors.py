"""The one user-facing error class. The CLI boundary turns it into exit code 2."""

from __future__ import annotations


class RescueError(Exception):
    """A usage, configuration or environment problem the user can fix.

    The message names the file (and line where known) and says what to do.
    Findings about request content are not errors: they are ``Finding`` values.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"
