'''A planned batch holds more models than the policy allows per batch.

Each batch is one dbt invocation holding one warehouse slot; the cap keeps a batch small
enough to retry and to interleave with scheduled work. The rule checks the batches the
planner makes from the request (lineage order, `batches.max_models` and
`batches.max_minutes`), so it says exactly what would run.

Bad (`max_models_per_batch: 5`, 12 models selected):

```yaml
select: int_orders+
```

Good:

```yaml
select: int_orders+
batches:
  max_models: 5
```

Setting: `policy.limits.max_models_per_batch` (default null: no cap).
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    cap = ctx.policy.limits.max_models_per_batch
    if cap is None:
        return
    over = [(i, len(ms)) for i, (ms, _) in enumerate(ctx.batches, 1) if len(ms) > cap]
    if over:
        i, n = max(over, key=lambda x: x[1])
        field = ("batches", "max_models") if ctx.request.batches is not None else ("select",)
        yield Violation(f"{len(over)} planned batch(es) exceed the policy's {cap} models per batch "
                        f"(batch {i} has {n}): set batches.max_models to {cap} or less", field)


RULE = Rule("RR215", "batch-models-cap", "soft", check, __doc__ or "")
