'''`full_refresh: true` selects a model configured `full_refresh: false`.

dbt **silently** ignores `--full-refresh` for a model whose config says `full_refresh:
false`: it runs incrementally, reports success and logs nothing. The requester would
believe the table was rebuilt from scratch when it was not. Exclude such models from a
full-refresh request (and rescue them in a separate, incremental request), or change the
model's config in a reviewed pull request first.

Bad (`mart_customer_ltv` has `full_refresh=false` in its config):

```yaml
select: int_customer_orders+
full_refresh: true
```

Good:

```yaml
select: int_customer_orders+
exclude: mart_customer_ltv
full_refresh: true
```
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation, names


def check(ctx: PolicyContext) -> Iterator[Violation]:
    if not ctx.request.full_refresh:
        return
    ignored = [n for n in ctx.nodes() if n.full_refresh is False]
    if ignored:
        yield Violation(
            f"dbt silently ignores --full-refresh for {names(ignored)} (configured full_refresh: false): "
            "they would run incrementally while the request says they are rebuilt; exclude them "
            "(exclude: ...) or change their config in a reviewed change first", ("full_refresh",))


RULE = Rule("RR210", "full-refresh-ignored", "hard", check, __doc__ or "")
