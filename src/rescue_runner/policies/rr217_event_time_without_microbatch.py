'''`event_time` is set but no selected model is a microbatch model.

dbt applies `--event-time-start/--event-time-end` only to microbatch models (and to the
filtering of their inputs). When none is selected, dbt ignores the window and runs every
model normally: a table is rebuilt completely and an incremental model runs its usual
increment. The requester probably meant to select the microbatch model too.

Bad (`mart_events_monthly` is a table):

```yaml
select: mart_events_monthly
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

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    if ctx.request.event_time is None or not ctx.models:
        return
    if not any(n.incremental_strategy == "microbatch" for n in ctx.nodes()):
        yield Violation("event_time only affects microbatch models and none is selected: dbt ignores it and "
                        "runs the selection normally; select the microbatch model or remove event_time",
                        ("event_time",))


RULE = Rule("RR217", "event-time-without-microbatch", "advisory", check, __doc__ or "")
