'''The request window is too short for the estimated duration.

The runner starts a batch only inside the window, and a batch that cannot finish there
runs on past it. For a recurring (daily) window, the longest planned batch must fit in the
longest open stretch of the window; for a one-off window (`not_before`/`not_after` only)
the whole request must fit. Estimates come from the run history (median of recent
successful runs per model; models without history count as the default, 60 s). Batches are
those of the planner, so `batches.max_minutes` is the way to make long work fit a night.

Bad (the selection is estimated at 5 h):

```yaml
select: mart_revenue+
window:
  daily: {start: "01:00", end: "03:00"}
  timezone: Europe/Berlin
```

Good:

```yaml
select: mart_revenue+
window:
  daily: {start: "22:00", end: "06:00"}
  timezone: Europe/Berlin
batches:
  max_minutes: 90
```
'''

from __future__ import annotations

import math
from collections.abc import Iterator

from ..windows import UnknownTimezone, intervals
from .base import PolicyContext, Rule, Violation, minutes


def check(ctx: PolicyContext) -> Iterator[Violation]:
    w = ctx.request.window
    period = ctx.window_period()
    if w is None or period is None or not ctx.batches:
        return
    try:
        stretches = intervals(w, *period)
    except UnknownTimezone:
        return  # RR302
    if not stretches:
        return  # RR307
    longest = max((e - s).total_seconds() for s, e in stretches)
    recurring = w.daily is not None
    if recurring:
        need = max(s for _, s in ctx.batches)
        what = "the longest planned batch is estimated at"
    else:
        need = math.fsum(s for _, s in ctx.batches)
        what = "the request is estimated at"
    if need > longest + 1e-9:
        hint = ("split it with batches.max_minutes or widen the window" if recurring
                else "widen the window (not_before/not_after) or use a daily window with batches")
        yield Violation(f"{what} {minutes(need)} but the window is open for at most {minutes(longest)} at a "
                        f"time: {hint}", ("window",))


RULE = Rule("RR306", "window-too-short", "soft", check, __doc__ or "")
