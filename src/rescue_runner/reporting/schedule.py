"""The expected start of each batch, appended to `rescue plan` output in every format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from ..contention import BatchStart, describe_starts


def with_schedule(fmt: str, rendered: str, starts: Sequence[BatchStart], basis: str,
                  timezone: str | None, now: datetime) -> str:
    """``rendered`` (a plan in ``fmt``) with the expected start of every batch added."""
    lines = describe_starts(starts, timezone, now)
    if fmt == "json":
        data = json.loads(rendered)
        data["schedule"] = {"basis": basis, "batches": [s.to_dict() for s in starts]}
        return json.dumps(data, indent=2) + "\n"
    if fmt == "markdown":
        return rendered.rstrip("\n") + "\n\n**Expected schedule** (" + basis + ")\n\n" + \
            "".join(f"- {line}\n" for line in lines)
    return rendered + f"expected schedule ({basis}):\n" + "".join(f"  {line}\n" for line in lines)
