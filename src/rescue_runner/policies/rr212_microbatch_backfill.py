'''A microbatch model would be built from `begin`: say how many batches that is.

Without `event_time`, dbt builds a microbatch model batch by batch from its `begin` config
up to now (one query per `batch_size`) when the table does not exist yet, and when
`full_refresh` is set. That can be thousands of queries. This rule warns with the number of
batches, counted from `begin` (truncated to its batch) to the batch holding `now`, both
included.

Whether the table exists is decided **from the run history** (the `run_results.json` files
in `dbt.history`), never by querying the warehouse: a microbatch model without a
successful run there is taken as a first build. With no history at all every microbatch
model is reported, which errs on the side of telling.

Bad (no history for `int_events_daily`, `begin: 2026-01-01`, `batch_size: day`):

```yaml
select: int_events_daily
```

Good:

```yaml
select: int_events_daily
event_time: {start: 2026-10-01, end: 2026-11-01}
```
'''

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from ..model import NodeInfo
from .base import PolicyContext, Rule, Violation

_UNITS = ("hour", "day", "month", "year")


def parse_begin(value: str | None) -> datetime | None:
    """dbt's ``begin`` config as a UTC datetime (a naive value is UTC, as in dbt)."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value).strip().replace(" ", "T"))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def batch_count(begin: datetime, batch_size: str, now: datetime) -> int | None:
    """Batches from the batch holding ``begin`` to the batch holding ``now``, inclusive.

    None for an unknown ``batch_size``; 0 when ``begin`` is after ``now``.
    """
    b, n = begin.astimezone(UTC), now.astimezone(UTC)
    if b > n:
        return 0
    if batch_size == "year":
        return n.year - b.year + 1
    if batch_size == "month":
        return (n.year - b.year) * 12 + n.month - b.month + 1
    if batch_size == "day":
        return (n.date() - b.date()).days + 1
    if batch_size == "hour":
        start = b.replace(minute=0, second=0, microsecond=0)
        return int((n - start).total_seconds() // 3600) + 1
    return None


def _how_many(node: NodeInfo, ctx: PolicyContext) -> str:
    begin, size = parse_begin(node.begin), (node.batch_size or "").lower()
    count = batch_count(begin, size, ctx.now) if begin is not None else None
    if begin is None or count is None:
        return (f"every batch from its begin ({node.begin or 'not set'}, "
                f"batch_size {node.batch_size or 'not set'})")
    plural = "es" if count != 1 else ""
    return f"{count} batch{plural} (one per {size} from {begin:%Y-%m-%d %H:%M} UTC to now)"


def check(ctx: PolicyContext) -> Iterator[Violation]:
    req = ctx.request
    if req.event_time is not None:
        return
    for node in ctx.nodes():
        if node.incremental_strategy != "microbatch":
            continue
        if req.full_refresh and node.full_refresh is not False:
            yield Violation(f"full_refresh rebuilds microbatch model {node.name} from begin: dbt will run "
                            f"{_how_many(node, ctx)}; give event_time: {{start, end}} instead to reload only "
                            "the batches that need it", ("full_refresh",))
        elif not ctx.has_history(node.unique_id):
            yield Violation(f"{node.name} has no successful run in the run history, so this is taken as its "
                            f"first build: dbt will run {_how_many(node, ctx)}; give event_time: "
                            "{start, end} to load only some batches", ("select",))


RULE = Rule("RR212", "microbatch-backfill", "advisory", check, __doc__ or "")
