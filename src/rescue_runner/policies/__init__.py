"""Production-safety rules as code, graded by the policy's enforcement levels.

``RULES`` is the one registry: rule code -> :class:`~.base.Rule`. Each rule lives in its
own module whose docstring is its user documentation (docs/rules.md is generated from
them by scripts/gen_rule_docs.py). Codes: RR1xx the request itself, RR2xx selection and
lineage, RR3xx schedule and windows.

``evaluate(ctx)`` runs every request-scoped rule and grades what it finds:

* ``advisory``: a warning;
* ``soft``: an error, unless the request's ``overrides`` hold that code approved by one of
  the policy's ``approvers``; then a warning saying "overridden by X", and the finding
  carries the override (``PolicyFinding.override``) so the audit records it;
* ``hard``: an error, whatever the overrides say.
"""

from __future__ import annotations

from ..model import Finding, Override, Severity
from ..policy import Level, Policy
from . import (
    rr101_ticket_required,
    rr102_reason_too_short,
    rr103_request_expired,
    rr104_expiry_required,
    rr105_invalid_override,
    rr190_policy_changed,
    rr210_full_refresh_ignored,
    rr211_microbatch_full_refresh_window,
    rr212_microbatch_backfill,
    rr213_selection_too_broad,
    rr214_heavy_lineage_unsplit,
    rr215_batch_models_cap,
    rr216_batch_minutes_cap,
    rr217_event_time_without_microbatch,
    rr301_heavy_full_refresh_outside_quiet,
    rr302_unknown_timezone,
    rr303_range_order,
    rr304_dst_gap,
    rr305_dst_fold,
    rr306_window_too_short,
    rr307_window_closed,
)
from .base import PolicyContext, PolicyFinding, Rule, Violation

__all__ = ["RULES", "PolicyContext", "PolicyFinding", "Rule", "Violation", "applied_overrides", "evaluate"]

RULES: dict[str, Rule] = {
    "RR101": rr101_ticket_required.RULE,
    "RR102": rr102_reason_too_short.RULE,
    "RR103": rr103_request_expired.RULE,
    "RR104": rr104_expiry_required.RULE,
    "RR105": rr105_invalid_override.RULE,
    "RR190": rr190_policy_changed.RULE,
    "RR210": rr210_full_refresh_ignored.RULE,
    "RR211": rr211_microbatch_full_refresh_window.RULE,
    "RR212": rr212_microbatch_backfill.RULE,
    "RR213": rr213_selection_too_broad.RULE,
    "RR214": rr214_heavy_lineage_unsplit.RULE,
    "RR215": rr215_batch_models_cap.RULE,
    "RR216": rr216_batch_minutes_cap.RULE,
    "RR217": rr217_event_time_without_microbatch.RULE,
    "RR301": rr301_heavy_full_refresh_outside_quiet.RULE,
    "RR302": rr302_unknown_timezone.RULE,
    "RR303": rr303_range_order.RULE,
    "RR304": rr304_dst_gap.RULE,
    "RR305": rr305_dst_fold.RULE,
    "RR306": rr306_window_too_short.RULE,
    "RR307": rr307_window_closed.RULE,
}


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
