'''The request window never opens again: the request can never run.

Either `window.not_after` has passed, the request expires before its window opens, or the
daily window never meets the `not_before`/`not_after` range. Checked from now (or
`not_before`, if later) up to `not_after`/`expires`, at most one year ahead. An expired
request is reported by RR103 instead.

Bad (validated on 2026-11-23):

```yaml
window:
  not_before: 2026-11-01T22:00:00Z
  not_after: 2026-11-02T06:00:00Z
```

Good:

```yaml
window:
  not_before: 2026-11-24T22:00:00Z
  not_after: 2026-11-25T06:00:00Z
```
'''

from __future__ import annotations

from collections.abc import Iterator

from ..windows import UnknownTimezone, intervals
from .base import HORIZON, PolicyContext, Rule, Violation, when


def check(ctx: PolicyContext) -> Iterator[Violation]:
    req, now = ctx.request, ctx.now
    w = req.window
    if w is None or (req.expires is not None and req.expires <= now):
        return  # no window, or RR103
    if w.not_before is not None and w.not_after is not None and w.not_after <= w.not_before:
        return  # RR303
    if w.not_after is not None and w.not_after <= now:
        yield Violation(f"the window closed at {when(w.not_after, w.timezone)}: the request can no longer "
                        "run; remove it or move the window", ("window", "not_after"))
        return
    start = max(now, w.not_before) if w.not_before is not None else now
    if req.expires is not None and req.expires <= start:
        yield Violation(f"the request expires ({when(req.expires)}) before its window opens "
                        f"({when(start, w.timezone)}): move expires or the window", ("expires",))
        return
    ends = [t for t in (w.not_after, req.expires) if t is not None]
    end = min([*ends, start + HORIZON])
    try:
        found = intervals(w, start, end)
    except UnknownTimezone:
        return  # RR302
    if not found:
        yield Violation(f"the window never opens between {when(start, w.timezone)} and "
                        f"{when(end, w.timezone)}: the daily window does not meet the not_before/not_after "
                        "range; fix the times", ("window",))


RULE = Rule("RR307", "window-closed", "hard", check, __doc__ or "")
