'''`full_refresh` together with `event_time` on a microbatch model: data loss.

For a microbatch model, `--full-refresh` with `--event-time-start/--event-time-end` does not
reload the window into the table: dbt **replaces the whole table with just that window**.
Every row outside the window is lost. To reload some batches, drop `full_refresh` (dbt
then deletes and re-inserts exactly those batches); to rebuild everything from `begin`,
drop `event_time`.

Bad:

```yaml
select: int_events_daily+
full_refresh: true
event_time: {start: 2026-10-01, end: 2026-11-01}
```

Good:

```yaml
select: int_events_daily+
event_time: {start: 2026-10-01, end: 2026-11-01}
```
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation, names


def check(ctx: PolicyContext) -> Iterator[Violation]:
    req = ctx.request
    if not (req.full_refresh and req.event_time is not None):
        return
    hit = [n for n in ctx.nodes() if n.incremental_strategy == "microbatch" and n.full_refresh is not False]
    if hit:
        et = req.event_time
        yield Violation(
            f"full_refresh with event_time on microbatch model(s) {names(hit)}: dbt replaces the whole "
            f"table with only {et.start:%Y-%m-%d %H:%M}..{et.end:%Y-%m-%d %H:%M} UTC and loses every "
            "other row; remove full_refresh to reload just those batches, or remove event_time to "
            "rebuild from begin", ("full_refresh",))


RULE = Rule("RR211", "microbatch-full-refresh-window", "hard", check, __doc__ or "")
