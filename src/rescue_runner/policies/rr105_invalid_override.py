'''An override that has no effect: wrong code, not overridable, or not approved by an approver.

`overrides` lets a named approver accept a finding of a **soft** rule. An override of a
code that is not a policy rule, of a hard rule (never overridable), of an advisory rule
(never blocks), or approved by someone who is not in `policy.approvers` does nothing; this
rule says so, so nobody believes a finding was accepted when it was not. Approver names are
compared without case and a leading `@`. The override is a claim written in the request:
reviewers must check that the named approver really approved the pull request.

Bad (`approvers: ["@data-platform-lead"]`, RR210 is hard):

```yaml
overrides:
  - code: RR210
    approved_by: "@jane.doe"
    reason: I know what I am doing.
```

Good (RR301 is soft):

```yaml
overrides:
  - code: RR301
    approved_by: "@data-platform-lead"
    reason: Month-end close cannot wait for the night window; finance agreed.
```

Settings: `policy.approvers`, `policy.enforcement`.
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    from . import RULES

    seen: set[str] = set()
    policy = ctx.policy
    for i, ov in enumerate(ctx.request.overrides):
        where = ("overrides", i)
        rule = RULES.get(ov.code)
        if rule is None:
            yield Violation(f"{ov.code} is not a policy rule code: only findings of soft policy rules "
                            "can be overridden; remove this override", where)
            continue
        if rule.scope != "request":
            yield Violation(f"{ov.code} is about the policy file itself and cannot be overridden in a "
                            "request; remove this override", where)
            continue
        level = policy.level(ov.code)
        if level == "hard":
            yield Violation(f"{ov.code} ({rule.name}) is hard in this policy and cannot be overridden; "
                            "change the request instead", where)
        elif level == "advisory":
            yield Violation(f"{ov.code} ({rule.name}) is advisory and never blocks: this override is "
                            "not needed; remove it", where)
        elif not policy.is_approver(ov.approved_by):
            who = ", ".join(policy.approvers) if policy.approvers else "nobody: the policy names no approvers"
            yield Violation(f"override of {ov.code} by {ov.approved_by} has no effect: not a policy "
                            f"approver (approvers: {who})", (*where, "approved_by"))
        if ov.code in seen:
            yield Violation(f"{ov.code} is overridden more than once; keep one override per code", where)
        seen.add(ov.code)


RULE = Rule("RR105", "invalid-override", "advisory", check, __doc__ or "")
