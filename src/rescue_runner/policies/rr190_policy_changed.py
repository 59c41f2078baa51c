'''The change modifies the policy: it needs review by the policy owners.

In CI, `rescue validate --base-ref origin/main` judges requests by the policy of the
protected branch, never by the one in the pull request, so a pull request cannot weaken the
rules it is judged by. When the pull request's `rescue.yaml` holds a different policy (or no
longer parses), this finding names the owners from the **base** policy
(`policy.owners`) who must review it; make them code owners of `rescue.yaml` so the review
is enforced. Formatting and comments do not count: policies are compared by `policy_hash`,
after defaults are filled in.

This rule is evaluated once per run, located at `rescue.yaml`, and cannot be overridden in a
request: `advisory` gives a warning, `soft` and `hard` an error.

Bad (a pull request that adds a request and relaxes the rule it breaks):

```yaml
policy:
  request:
    ticket_required: false   # was true on main
```

Good: change the policy in its own pull request, reviewed by the owners; requests follow.

Settings: `policy.owners`.
'''

from __future__ import annotations

from collections.abc import Iterator

from ..model import Finding, Severity
from ..policy import Policy
from .base import PolicyContext, PolicyFinding, Rule, Violation

CODE = "RR190"


def check(ctx: PolicyContext) -> Iterator[Violation]:
    return iter(())  # config-scoped: see policy_change_finding


def policy_change_finding(base: Policy, head: Policy | None, path: str, line: int | None,
                          *, head_problem: str | None = None) -> Finding | None:
    """RR190 when the working tree's policy (``head``) differs from the trusted ``base`` policy.

    ``head`` None means the working tree's rescue.yaml is missing or invalid
    (``head_problem`` says how).
    """
    if head is not None and head.to_dict() == base.to_dict():  # what policy_hash hashes
        return None
    owners = ", ".join(base.owners) if base.owners else "nobody (the base policy names no owners)"
    what = head_problem or "this change modifies the policy in rescue.yaml"
    level = base.level(CODE)
    severity = Severity.WARNING if level == "advisory" else Severity.ERROR
    msg = (f"{what}; requests are still judged by the policy of the base branch. A policy change "
           f"needs review by the policy owners: {owners}")
    return PolicyFinding(CODE, severity, msg, path, line, level=level)


RULE = Rule(CODE, "policy-changed", "advisory", check, __doc__ or "", scope="config")
