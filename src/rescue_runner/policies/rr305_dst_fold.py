'''A daily window boundary falls in a repeated hour (DST fold): it happens twice that day.

When clocks fall back (Europe/Berlin, last Sunday of October, 03:00 -> 02:00), the times
02:00-02:59 happen twice. rescue-runner always uses the **first** occurrence (the first
instant the local clock shows that time), so a 01:30-02:30 window lasts 1 h that day,
not 2 h. This is a warning: the window works, but it may not be what the author pictured.
Move the boundary out of the repeated hour to silence it.

Bad:

```yaml
window:
  daily: {start: "22:00", end: "02:30"}
  timezone: Europe/Berlin
```

Good:

```yaml
window:
  daily: {start: "22:00", end: "04:00"}
  timezone: Europe/Berlin
```
'''

from __future__ import annotations

from collections.abc import Iterator

from ._dst import jump, problems
from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    w = ctx.request.window
    folds = [p for p in problems(ctx) if p.kind == "fold"]
    if w is None or not w.timezone or not folds:
        return
    for which in ("start", "end"):
        hits = [p for p in folds if p.which == which]
        if not hits:
            continue
        p = hits[0]
        first, second = jump(p, w.timezone)
        more = f" (and {len(hits) - 1} more date(s))" if len(hits) > 1 else ""
        yield Violation(f"window.daily.{which} {p.clock:%H:%M} happens twice in {w.timezone} on "
                        f"{p.day}{more} ({first}, then {second}); the window uses the first, "
                        f"{p.at:%Y-%m-%d %H:%M} UTC",
                        ("window", "daily", which))


RULE = Rule("RR305", "dst-fold", "advisory", check, __doc__ or "")
