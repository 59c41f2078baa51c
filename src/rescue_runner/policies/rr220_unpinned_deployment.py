'''The target deployment builds a branch, not the approved commit.

rescue-runner approves a request at a commit and, with its own flow, builds exactly that
commit. A team's own deployment mapped in `prefect.mapping` may only take a branch
(`ref: dbt_repo_branch`) or nothing at all: it then builds whatever that branch holds when
the worker clones it, which may differ from what was reviewed (a later merge, a force-push).
Advisory by default; a team that requires pinned runs sets `policy.enforcement: {RR220: hard}`
and maps a commit parameter instead (`commit: dbt_repo_commit`).

Bad (rescue.yaml: the template clones by branch):

```yaml
prefect:
  mapping:
    selection: dbt_selects.run
    ref: dbt_repo_branch
```

Good:

```yaml
prefect:
  mapping:
    selection: dbt_selects.run
    commit: dbt_repo_commit
```
'''

from __future__ import annotations

from collections.abc import Iterator

from .base import PolicyContext, Rule, Violation


def check(ctx: PolicyContext) -> Iterator[Violation]:
    cap = ctx.deployment
    if cap is None or cap.pinned:
        return
    how = (f"builds the branch passed in {cap.ref_parameter}" if cap.ref_only
           else "builds whatever it is configured to build")
    yield Violation(f"the target deployment {how}, not the approved commit: what runs may differ from what "
                    "was approved; map a commit parameter (prefect.mapping.commit) to pin it", ("select",))


RULE = Rule("RR220", "unpinned-deployment", "advisory", check, __doc__ or "")
