'''A daily window boundary falls in a DST gap: that local time does not exist that day.

When clocks spring forward (Europe/Berlin, last Sunday of March, 02:00 -> 03:00), the times
02:00-02:59 never happen. rescue-runner's rule for every boundary is "the first instant at
which the local clock shows that time or later", so a boundary in the gap becomes the jump
itself (03:00): a 01:30-02:30 window then lasts 30 minutes instead of an hour, and a
02:30-05:00 window starts at 03:00. Rather than run with a silently different window, the
request is refused: pick a boundary outside the gap. A boundary exactly at the start of
the gap (02:00 in Berlin) is accepted: it is the instant of the jump, as the author means.
Dates are checked from the window's `not_before` (else now) to its `not_after` or
`expires` (else one year ahead).

Bad:

```yaml
window:
  daily: {start: "02:30", end: "05:00"}
  timezone: Europe/Berlin
```

Good:

```yaml
window:
  daily: {start: "03:00", end: "05:00"}
  timezone: Europe/Berlin
```
'''

from __future__ import annotations

from collections.abc import Iterator

from ._dst import jump, problems
from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    w = ctx.request.window
    if w is None or not w.timezone:
        return
    # A boundary exactly at the start of the gap (02:00 in Berlin) is the jump itself, the
    # instant the user means: only times strictly inside the gap are refused.
    gaps = [p for p in problems(ctx) if p.kind == "gap" and jump(p, w.timezone)[0] != f"{p.clock:%H:%M}"]
    for which in ("start", "end"):
        hits = [p for p in gaps if p.which == which]
        if not hits:
            continue
        p = hits[0]
        frm, to = jump(p, w.timezone)
        more = f" (and {len(hits) - 1} more date(s))" if len(hits) > 1 else ""
        yield Violation(f"window.daily.{which} {p.clock:%H:%M} does not exist in {w.timezone} on "
                        f"{p.day}{more}: clocks jump from {frm} to {to}, so the window would {which} at "
                        f"{to}; pick a time outside {frm}-{to}", ("window", "daily", which))


RULE = Rule("RR304", "dst-gap", "hard", check, __doc__ or "")
