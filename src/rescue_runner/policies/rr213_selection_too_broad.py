'''The selection holds more models than the policy allows in one request.

A rescue is meant to be surgical. A selector such as `tag:finance+` or `*` can quietly
grow to hundreds of models; the cap makes a broad rescue an explicit, reviewed decision.
The count is of the models dbt actually selects (after `exclude`).

Bad (`max_models_per_request: 50`, the selection resolves to 300 models):

```yaml
select: stg_orders+
```

Good:

```yaml
select: int_orders+
exclude: tag:deprecated
```

Setting: `policy.limits.max_models_per_request` (default 100; null switches the cap off).
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    cap = ctx.policy.limits.max_models_per_request
    if cap is not None and len(ctx.models) > cap:
        yield Violation(f"the selection resolves to {len(ctx.models)} models; the policy allows at most "
                        f"{cap} per request: narrow select, add exclude, or split it into several requests",
                        ("select",))


RULE = Rule("RR213", "selection-too-broad", "soft", check, __doc__ or "")
