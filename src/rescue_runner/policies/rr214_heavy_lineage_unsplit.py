'''The selection contains heavy models but the request sets no batch split.

Without `batches`, the whole selection is one dbt invocation: a heavy model then holds its
warehouse slot for the whole run, together with everything else, and a failure restarts
everything. When the selected lineage contains a heavy model (see `policy.heavy`) and more
than one model, the request must say how to split it (`batches.max_models` or
`batches.max_minutes`), so the planner cuts it into lineage-ordered batches.

Bad (`mart_revenue` is heavy):

```yaml
select: int_orders+
```

Good:

```yaml
select: int_orders+
batches:
  max_models: 3
  pause_minutes: 5
```

Settings: `policy.heavy` (what is heavy).
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation, names


def check(ctx: PolicyContext) -> Iterator[Violation]:
    if ctx.request.batches is not None or len(ctx.models) < 2:
        return
    heavy = ctx.heavy()
    if heavy:
        node, why = heavy[0]
        yield Violation(f"the selection has {len(ctx.models)} models including heavy "
                        f"{names(n for n, _ in heavy)} "
                        f"({node.name}: {why}) but no batch split: add batches: {{max_models: N}} or "
                        "{max_minutes: M} so it runs in lineage-ordered batches", ("select",))


RULE = Rule("RR214", "heavy-lineage-unsplit", "soft", check, __doc__ or "")
