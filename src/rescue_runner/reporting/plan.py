"""Render a Plan as text, json or markdown (`rescue plan`)."""

from __future__ import annotations

from collections.abc import Callable

from ..model import Plan, ProjectGraph
from ..planner import plan_to_json
from .units import duration as _duration


def _name(uid: str) -> str:
    return uid.rsplit(".", 1)[-1]


def render_plan_text(plan: Plan, graph: ProjectGraph) -> str:
    """Terminal output: one line per batch in run order, pauses between them, then totals."""
    out = [f"plan {plan.request_id}  ({len(plan.models)} models, {len(plan.batches)} batches)",
           f"fingerprint {plan.fingerprint}"]
    for b in plan.batches:
        if b.index > 1 and plan.pause_seconds:
            out.append(f"  pause {_duration(plan.pause_seconds)}")
        flag = "  --full-refresh" if b.full_refresh else ""
        unknown = f" ({len(b.unknown_estimates)} without history)" if b.unknown_estimates else ""
        out.append(f"  batch {b.index}  starts +{_duration(b.start_offset_seconds)}  "
                   f"~{_duration(b.estimated_seconds)}{unknown}{flag}")
        out.append("    " + ", ".join(_name(m) for m in b.models))
    out.append(f"estimated dbt time {_duration(plan.estimated_seconds)}")
    out += [f"warning: {w}" for w in plan.warnings]
    out += downstream_lines(plan)
    return "\n".join(out) + "\n"


def downstream_lines(plan: Plan, limit: int = 10) -> list[str]:
    """What the plan leaves stale (RR218), for terminals."""
    d, out = plan.downstream, []
    if d.stale:
        source = f" (built from the old {', '.join(_name(m) for m in d.feeding)})" if d.feeding else ""
        out.append(f"stale after this rescue: {len(d.stale)} downstream table(s){source}: "
                   + _listed(d.stale, limit))
    if d.excluded:
        out.append(f"excluded on purpose (stay stale): {_listed(d.excluded, limit)}")
    return out


def _listed(ids: tuple[str, ...], limit: int) -> str:
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(_name(m) for m in ids[:limit]) + more


def render_plan_json(plan: Plan, graph: ProjectGraph) -> str:
    return plan_to_json(plan) + "\n"


def render_plan_markdown(plan: Plan, graph: ProjectGraph) -> str:
    from .mermaid import plan_markdown

    return plan_markdown(plan, graph)


PLAN_RENDERERS: dict[str, Callable[[Plan, ProjectGraph], str]] = {
    "text": render_plan_text,
    "json": render_plan_json,
    "markdown": render_plan_markdown,
}
