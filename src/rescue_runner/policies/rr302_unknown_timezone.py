'''The window's `timezone` is not an IANA time zone name.

A daily window means nothing without its zone, and guessing is dangerous: rescue-runner
never falls back to UTC or to the machine's zone. Names are IANA tz database names,
case-sensitive, such as `Europe/Berlin`, `America/New_York` or `UTC`; abbreviations like
`CET` or offsets like `+01:00` are not zones (they do not follow DST).

Bad:

```yaml
window:
  daily: {start: "22:00", end: "06:00"}
  timezone: Europe/Berln
```

Good:

```yaml
window:
  daily: {start: "22:00", end: "06:00"}
  timezone: Europe/Berlin
```
'''

from __future__ import annotations

import difflib
from collections.abc import Iterator

from ..windows import is_valid_timezone
from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    w = ctx.request.window
    if w is None or w.timezone is None or is_valid_timezone(w.timezone):
        return
    from ..windows import _known_zones

    close = difflib.get_close_matches(w.timezone, sorted(_known_zones()), n=1, cutoff=0.7)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    yield Violation(f"unknown time zone '{w.timezone}'{hint}: use an IANA name such as Europe/Berlin or UTC; "
                    "rescue-runner never falls back to UTC", ("window", "timezone"))


RULE = Rule("RR302", "unknown-timezone", "hard", check, __doc__ or "")
