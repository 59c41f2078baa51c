'''An expired request is not run any more.

A request is expired when `now` is at or after its `expires` (a date means the end of that
day, UTC). With `policy.expiry.max_age_days`, a request whose id starts with a date
(`2026-11-02-fix-orders.yaml`, the form `rescue new` writes) also expires that many days
after that date (midnight UTC): a rescue approved weeks ago is not a licence to rebuild
today's data. Remove the file, or renew it with a new date and a fresh review.

Bad (validated on 2026-11-23, `max_age_days: 14`):

```yaml
# rescues/2026-11-02-fix-orders.yaml
expires: 2026-11-20
```

Good:

```yaml
# rescues/2026-11-23-fix-orders.yaml
expires: 2026-11-30
```

Settings: `policy.expiry.max_age_days` (default null: only `expires` counts).
'''

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from .base import PolicyContext, Rule, Violation

_DATED_ID = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[-_.]|$)")


def request_date(request_id: str) -> date | None:
    """The date an id starts with (``2026-11-23-fix`` -> 2026-11-23), or None."""
    m = _DATED_ID.match(request_id)
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def check(ctx: PolicyContext) -> Iterator[Violation]:
    req = ctx.request
    if req.expires is not None and ctx.now >= req.expires:
        yield Violation(f"the request expired at {req.expires:%Y-%m-%d %H:%M} UTC: remove it, or renew it "
                        "with a later 'expires' and a fresh review", ("expires",))
        return
    max_age = ctx.policy.expiry.max_age_days
    day = request_date(req.id)
    if max_age is not None and day is not None:
        limit = datetime.combine(day, time(0), tzinfo=UTC) + timedelta(days=max_age)
        if ctx.now >= limit:
            yield Violation(f"the request is dated {day} (its file name) and the policy lets a request live "
                            f"{max_age:g} days: it expired at {limit:%Y-%m-%d %H:%M} UTC; remove it, or "
                            "renew it under today's date with a fresh review", ())


RULE = Rule("RR103", "request-expired", "hard", check, __doc__ or "")
