'''The reason must be at least as long as the policy asks.

Reviewers approve a rescue from its reason: what broke, and what this rerun fixes. One word
("fix", "rerun") gives them nothing to check. Length is counted without surrounding spaces.

Bad (with `reason_min_length: 30`):

```yaml
reason: rerun orders please
```

Good:

```yaml
reason: int_orders double-counted refunded payments; rebuild it and its marts after the fix
```

Setting: `policy.request.reason_min_length` (default 10, the schema's own minimum).
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    need = ctx.policy.request.reason_min_length
    have = len(ctx.request.reason.strip())
    if have < need:
        yield Violation(f"the reason has {have} characters; the policy asks for at least {need}: say what "
                        "broke and what this rescue fixes", ("reason",))


RULE = Rule("RR102", "reason-too-short", "hard", check, __doc__ or "")
