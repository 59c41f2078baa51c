'''A planned batch is estimated to run longer than the policy allows per batch.

Estimates are the median durations of each model's recent successful runs in the run
history (a model without history counts as the stated default, 60 s unless configured).
The rule checks the planner's batches; a batch of a single model that is over the cap on
its own cannot be split further and is left to the heavy-model rules.

Bad (`max_batch_minutes: 30`, the selection is estimated at 2 h):

```yaml
select: int_orders+
```

Good:

```yaml
select: int_orders+
batches:
  max_minutes: 30
```

Setting: `policy.limits.max_batch_minutes` (default null: no cap).
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation, minutes


def check(ctx: PolicyContext) -> Iterator[Violation]:
    cap = ctx.policy.limits.max_batch_minutes
    if cap is None:
        return
    over = [(i, s) for i, (ms, s) in enumerate(ctx.batches, 1) if len(ms) > 1 and s > cap * 60 + 1e-9]
    if over:
        i, s = max(over, key=lambda x: x[1])
        field = ("batches", "max_minutes") if ctx.request.batches is not None else ("select",)
        yield Violation(f"{len(over)} planned batch(es) are estimated over the policy's {cap:g} min per "
                        f"batch (batch {i}: {minutes(s)}): set batches.max_minutes to {cap:g} or less", field)


RULE = Rule("RR216", "batch-minutes-cap", "soft", check, __doc__ or "")
