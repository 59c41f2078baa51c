'''A window or event-time range ends before it starts.

`window.not_after` at or before `window.not_before`, or `event_time.end` at or before
`event_time.start`: such a window never opens and such an event-time range selects no batch; both are almost
always swapped or mistyped dates. (`event_time.end` is exclusive, as dbt's
`--event-time-end`: to reload October, write `start: 2026-10-01, end: 2026-11-01`.)

Bad:

```yaml
window:
  not_before: 2026-03-08T06:00:00Z
  not_after: 2026-03-01T22:00:00Z
```

Good:

```yaml
window:
  not_before: 2026-03-01T22:00:00Z
  not_after: 2026-03-08T06:00:00Z
```
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    w, et = ctx.request.window, ctx.request.event_time
    if w is not None and w.not_before is not None and w.not_after is not None and w.not_after <= w.not_before:
        yield Violation(f"window.not_after ({w.not_after:%Y-%m-%d %H:%M} UTC) is not after window.not_before "
                        f"({w.not_before:%Y-%m-%d %H:%M} UTC): the window never opens; swap or fix the dates",
                        ("window", "not_after"))
    if et is not None and et.end <= et.start:
        yield Violation(f"event_time.end ({et.end:%Y-%m-%d %H:%M} UTC) is not after event_time.start "
                        f"({et.start:%Y-%m-%d %H:%M} UTC): no batch would be reloaded; end is exclusive, so "
                        "to reload October write start: 2026-10-01, end: 2026-11-01", ("event_time", "end"))


RULE = Rule("RR303", "range-order", "hard", check, __doc__ or "")
