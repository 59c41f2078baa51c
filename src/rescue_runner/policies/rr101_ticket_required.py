'''A request must name a ticket when the policy requires one.

A rescue changes production data; the ticket is where the incident, the decision and the
follow-up live. With `policy.request.ticket_required: true`, a request without `ticket`
is refused.

Bad:

```yaml
version: 1
reason: Orders were loaded twice after the source outage on 1 March.
requested_by: "@jane.doe"
select: int_orders+
```

Good:

```yaml
version: 1
reason: Orders were loaded twice after the source outage on 1 March.
requested_by: "@jane.doe"
ticket: DATA-1412
select: int_orders+
```

Setting: `policy.request.ticket_required` (default `false`: the rule is off).
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    if ctx.policy.request.ticket_required and not (ctx.request.ticket or "").strip():
        yield Violation("the policy requires a ticket: add 'ticket: DATA-123' (an issue key or URL) "
                        "naming the incident this rescue fixes", ("ticket",))


RULE = Rule("RR101", "ticket-required", "hard", check, __doc__ or "")
