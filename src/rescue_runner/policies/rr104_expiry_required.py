'''A request must set `expires` (when the policy requires it), and not too far ahead.

A rescue is approved for a situation; weeks later the same rebuild may do harm. With
`policy.expiry.required: true` every request must say until when it may run, and with
`policy.expiry.max_days` that date may be at most that many days after now.

Bad (with `required: true`, `max_days: 14`, validated on 2026-11-23):

```yaml
select: int_orders+
expires: 2027-06-30
```

Good:

```yaml
select: int_orders+
expires: 2026-11-30
```

Settings: `policy.expiry.required` (default false), `policy.expiry.max_days` (default null).
'''

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    rules, expires = ctx.policy.expiry, ctx.request.expires
    if expires is None:
        if rules.required:
            yield Violation("the policy requires an expiry: add 'expires: YYYY-MM-DD' (the last day the "
                            "rescue may run)", ())
        return
    if rules.max_days is not None and expires > ctx.now + timedelta(days=rules.max_days):
        latest = ctx.now + timedelta(days=rules.max_days)
        yield Violation(f"'expires' is more than {rules.max_days:g} days ahead; the latest the policy allows "
                        f"today is {latest:%Y-%m-%d %H:%M} UTC", ("expires",))


RULE = Rule("RR104", "expiry-required", "soft", check, __doc__ or "")
