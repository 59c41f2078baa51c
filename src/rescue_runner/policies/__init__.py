"""Production-safety rules as code, graded by the policy's enforcement levels.

``RULES`` is the one registry: rule code -> :class:`~.base.Rule`, discovered from the
``rrNNN_*`` modules of this package. Each rule lives in its own module whose docstring is
its user documentation (docs/rules.md is generated from them by scripts/gen_rule_docs.py).
Codes: RR1xx the request itself, RR2xx selection and lineage, RR3xx schedule and windows.

``evaluate(ctx)`` runs every request-scoped rule and grades what it finds:

* ``advisory``: a warning;
* ``soft``: an error, unless the request's ``overrides`` hold that code approved by one of
  the policy's ``approvers``; then a warning saying "overridden by X", and the finding
  carries the override (``PolicyFinding.override``) so the audit records it;
* ``hard``: an error, whatever the overrides say.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
from collections.abc import Mapping
from typing import Any

from ..model import Finding, Override, Severity
from ..policy import Level, Policy, parse_policy
from .base import PolicyContext, PolicyFinding, Rule, Violation

__all__ = ["DEFAULT_LEVELS", "RULES", "PolicyContext", "PolicyFinding", "Rule", "Violation",
           "applied_overrides", "default_policy", "evaluate", "policy_from_config", "policy_hash"]


def _discover() -> dict[str, Rule]:
    """Every ``rrNNN_*`` module of this package, by rule code (in code order).

    A new rule is a new module with a ``RULE``; nothing else names it.
    """
    rules: list[Rule] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("rr") and info.name[2:5].isdigit():
            rules.append(importlib.import_module(f"{__name__}.{info.name}").RULE)
    found: dict[str, Rule] = {}
    for rule in sorted(rules, key=lambda r: r.code):
        if rule.code in found:
            raise RuntimeError(f"rule code {rule.code} is defined twice")  # a packaging bug
        found[rule.code] = rule
    return found


RULES: dict[str, Rule] = _discover()
DEFAULT_LEVELS: Mapping[str, Level] = {code: rule.level for code, rule in RULES.items()}


def policy_from_config(data: Mapping[str, Any] | None) -> Policy:
    """A Policy from the ``policy`` mapping of rescue.yaml, levels resolved against the rules.

    Raises ``PolicyError`` (located) for invalid content or an unknown rule code.
    """
    return parse_policy(data, DEFAULT_LEVELS)


def default_policy() -> Policy:
    """The policy of a rescue.yaml without a policy section."""
    return policy_from_config({})


def policy_hash(policy: Policy) -> str:
    """``sha256:`` of the policy's canonical JSON (sorted keys, no spaces, ASCII).

    Two files that mean the same policy hash the same; the hash goes into plan fingerprints.
    """
    data = policy.with_defaults(DEFAULT_LEVELS).to_dict()
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def evaluate(ctx: PolicyContext) -> list[Finding]:
    """Every request-scoped rule on ``ctx``, graded by the policy; findings in rule order.

    Each finding is a :class:`PolicyFinding` (``level``, and ``override`` when a soft finding
    was overridden), located at the request field the rule names.
    """
    out: list[Finding] = []
    for code, rule in RULES.items():
        if rule.scope != "request":
            continue
        level = ctx.policy.level(code)
        for v in rule.check(ctx):
            out.append(_grade(ctx, code, level, v))
    return out


def applied_overrides(findings: list[Finding]) -> list[PolicyFinding]:
    """The findings a valid override turned from an error into a warning (for the audit trail)."""
    return [f for f in findings if isinstance(f, PolicyFinding) and f.override is not None]


def _grade(ctx: PolicyContext, code: str, level: Level, v: Violation) -> PolicyFinding:
    req = ctx.request
    line = req.line_of(*v.field) if v.field else (req.line_of() or 1)
    if level == "advisory":
        return PolicyFinding(code, Severity.WARNING, v.message, req.path, line, level=level)
    if level == "hard":
        return PolicyFinding(code, Severity.ERROR, v.message, req.path, line, level=level)
    claimed = [o for o in req.overrides if o.code == code]
    valid = _approved(claimed, ctx.policy)
    if valid is not None:
        msg = f"{v.message} [overridden by {valid.approved_by}: {valid.reason}]"
        return PolicyFinding(code, Severity.WARNING, msg, req.path, line, level=level, override=valid)
    if claimed:
        hint = f" [override by {claimed[0].approved_by} ignored: not a policy approver]"
    else:
        hint = " [soft: a policy approver may accept it under overrides]" if ctx.policy.approvers else ""
    return PolicyFinding(code, Severity.ERROR, v.message + hint, req.path, line, level=level)


def _approved(claimed: list[Override], policy: Policy) -> Override | None:
    return next((o for o in claimed if policy.is_approver(o.approved_by)), None)
