'''Full refresh of a heavy incremental model outside the policy's quiet windows.

Rebuilding a large incremental table from scratch takes long and loads the warehouse; the
team's rule is to do it only when nobody needs the warehouse. A request with
`full_refresh: true` that selects a heavy incremental model (see `policy.heavy`) must
have a `window` that is open only inside the policy's quiet windows: inside some `allow`
window and outside every `deny` window (deny beats allow). The request window is examined
from its `not_before` (else now) to its `not_after` or `expires` (else one year ahead), in
UTC, so DST changes and weekdays are taken into account. With no quiet windows in the
policy, the rule never fires. Models configured `full_refresh: false` are left to RR210.

Bad (quiet window 22:00-06:00 Europe/Berlin; `mart_revenue` is heavy):

```yaml
select: mart_revenue
full_refresh: true
```

Good:

```yaml
select: mart_revenue
full_refresh: true
window:
  daily: {start: "01:00", end: "05:00"}
  timezone: Europe/Berlin
```

Settings: `policy.heavy`, `policy.quiet_windows`.
'''

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from ..windows import UnknownTimezone, intervals, subtract
from .base import PolicyContext, Rule, Violation, minutes, names, when


def _describe(ctx: PolicyContext) -> str:
    q = ctx.policy.quiet
    parts = []
    if q.allow:
        parts.append("allowed " + "; ".join(w.describe() for w in q.allow))
    if q.deny:
        parts.append("never " + "; ".join(w.describe() for w in q.deny))
    return ", ".join(parts)


def check(ctx: PolicyContext) -> Iterator[Violation]:
    req = ctx.request
    if not req.full_refresh or ctx.policy.quiet.unrestricted:
        return
    heavy = [(n, why) for n, why in ctx.heavy()
             if n.materialized == "incremental" and n.full_refresh is not False]
    if not heavy:
        return
    first, why = heavy[0]
    what = f"full refresh of heavy incremental model(s) {names(n for n, _ in heavy)} ({first.name}: {why})"
    if req.window is None:
        yield Violation(f"{what} may only run in the policy's quiet windows ({_describe(ctx)}); the request "
                        "has no window: add a window inside them", ("full_refresh",))
        return
    period = ctx.window_period()
    if period is None:
        return  # the window never opens: RR303/RR307 say why
    try:
        open_ = intervals(req.window, *period)
        quiet = intervals(ctx.policy.quiet, *period)
    except UnknownTimezone:
        return  # RR302
    outside = subtract(open_, quiet)
    if outside:
        total = sum((e - s for s, e in outside), timedelta())
        first_out = when(outside[0][0], req.window.timezone)
        yield Violation(f"{what} may only run in the policy's quiet windows ({_describe(ctx)}); the request "
                        f"window is also open outside them, first at {first_out} "
                        f"({minutes(total.total_seconds())} in all until {when(period[1])}): move the window "
                        "inside the quiet windows", ("window",))


RULE = Rule("RR301", "heavy-full-refresh-outside-quiet", "soft", check, __doc__ or "")
