"""Fault points: the places between two steps of ``rescue apply`` where a test may kill it.

Set ``RESCUE_FAULT=<point>`` (or ``<point>:<n>`` for the n-th time the point is reached,
counting from 1) and the runner SIGKILLs itself there: no ``finally``, no lock release,
exactly like a machine that loses power. Every point is listed in ``POINTS``; the crash test
kills the runner at each of them and checks that a restart finishes the request with one
flow run per batch. In-process tests pass their own ``hit`` callable to the runner instead.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from .errors import RescueError

ENV = "RESCUE_FAULT"

POINTS: dict[str, str] = {
    "after_lock": "the lock is taken; nothing else happened",
    "after_validate_before_audit": "a request was validated; request_validated is not recorded",
    "before_audit_push": "an event is committed locally; the push has not happened",
    "after_audit_push": "an event was pushed; the step after it has not started",
    "before_submit": "the queue said go; the batch is not submitted",
    "after_submit_before_audit": "the flow run exists in Prefect; batch_submitted is not recorded",
    "after_run_final_before_audit": "the run is final; batch_finished is not recorded",
    "before_request_finished": "the last batch is recorded; request_finished is not",
    "before_lock_release": "the pass is over; the lock is still held",
}

FaultHook = Callable[[str], None]


class Crash(BaseException):
    """Raised by in-process fault hooks (tests) to stand for SIGKILL: the runner must not clean up."""


class FaultPoints:
    """Counts hits per point and kills the process at the configured one."""

    def __init__(self, spec: str | None = None) -> None:
        self.point, self.nth = parse(spec if spec is not None else os.environ.get(ENV, ""))
        self.hits: dict[str, int] = {}

    def __call__(self, point: str) -> None:
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}")
        self.hits[point] = self.hits.get(point, 0) + 1
        if point == self.point and self.hits[point] == self.nth:
            os.kill(os.getpid(), signal.SIGKILL)


def parse(spec: str) -> tuple[str | None, int]:
    """``"point"`` or ``"point:n"`` -> (point, n); ``""`` -> (None, 0). RescueError when unknown."""
    spec = spec.strip()
    if not spec:
        return None, 0
    point, _, nth = spec.partition(":")
    if point not in POINTS:
        raise RescueError(f"{ENV}={spec!r}: unknown fault point; known: {', '.join(POINTS)}")
    if nth and not (nth.isdigit() and int(nth) >= 1):
        raise RescueError(f"{ENV}={spec!r}: the count after ':' must be a whole number from 1")
    return point, int(nth) if nth else 1


def no_faults(point: str) -> None:
    """The hook of a normal run."""
