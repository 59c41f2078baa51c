'''The rescue leaves downstream tables built from the old data.

Rebuilding a model does not rebuild what reads from it. Every model downstream of the
selection that stores data of its own (a table, an incremental model, a snapshot, a
materialized view) keeps what it computed from the old version until it is rebuilt too,
so production is inconsistent: `int_orders` says one thing, `mart_revenue` another.
Downstream views and ephemeral models are not stale (they read through to the rebuilt
tables); the rule follows them to the tables behind them. Models the request's `exclude`
removes are a decision, not an oversight: they are listed as excluded on purpose in the
plan, and are not reported here.

Bad (`int_orders` is rebuilt; `int_customer_orders`, `mart_revenue` and the other marts
built from it are not):

```yaml
select: int_orders
```

Good (the downstream marts are rebuilt in lineage order):

```yaml
select: int_orders+
```

Also good (the heavy mart is left out on purpose; the plan lists it as excluded):

```yaml
select: int_orders+
exclude: mart_revenue+
```

`rescue plan` lists the stale tables (text, JSON `stale_downstream`, and the PR comment).
Default level `advisory` (a warning); make it `soft` or `hard` in `policy.enforcement` to
require a decision.
'''

from __future__ import annotations

from collections.abc import Iterator

from ..downstream import including_selection
from .base import PolicyContext, Rule, Violation, names


def check(ctx: PolicyContext) -> Iterator[Violation]:
    d = ctx.downstream
    if not d.stale:
        return
    n = len(d.stale)
    tables = "table" if n == 1 else "tables"
    built_from = f" built from the old {names(d.feeding, limit=3)}" if d.feeding else ""
    suggestion = " ".join(including_selection(ctx.request.select))
    excluded = (f"; already excluded on purpose: {names(d.excluded, limit=3)}" if d.excluded else "")
    yield Violation(
        f"{n} downstream {tables} will still hold data{built_from} after this rescue: "
        f"{names(d.stale, limit=5)}; rebuild them too with `select: {suggestion}`, "
        f"or leave them out on purpose with `exclude`{excluded}", ("select",))


RULE = Rule("RR218", "stale-downstream", "advisory", check, __doc__ or "")
