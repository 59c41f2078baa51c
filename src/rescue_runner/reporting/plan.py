"""Render a Plan as text, json or markdown (`rescue plan`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..model import Plan, ProjectGraph
from ..planner import plan_to_json
from ..windows import Timeline
from .units import duration as _duration


def _name(uid: str) -> str:
    return uid.rsplit(".", 1)[-1]


def render_plan_text(plan: Plan, graph: ProjectGraph, timeline: Timeline | None = None) -> str:
    """Terminal output: one line per batch in run order, pauses between them, then totals.

    With a ``timeline`` (a request with a window), each batch shows when it is expected to
    start, in the request's zone with UTC beside it; otherwise its offset from the start.
    """
    out = [f"plan {plan.request_id}  ({len(plan.models)} models, {len(plan.batches)} batches)",
           f"fingerprint {plan.fingerprint}"]
    for b in plan.batches:
        if b.index > 1 and plan.pause_seconds:
            out.append(f"  pause {_duration(plan.pause_seconds)}")
        flag = "  --full-refresh" if b.full_refresh else ""
        unknown = f" ({len(b.unknown_estimates)} without history)" if b.unknown_estimates else ""
        starts = timeline.show(b.index) if timeline else f"+{_duration(b.start_offset_seconds)}"
        out.append(f"  batch {b.index}  starts {starts}  "
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


def render_plan_json(plan: Plan, graph: ProjectGraph, timeline: Timeline | None = None) -> str:
    """The plan's JSON (as fingerprinted), plus ``timezone`` and ``expected_starts`` with a window."""
    if timeline is None:
        return plan_to_json(plan) + "\n"
    data: dict[str, Any] = {**json.loads(plan_to_json(plan)), **timeline.to_dict()}
    return json.dumps(data, indent=2) + "\n"


def render_plan_markdown(plan: Plan, graph: ProjectGraph, timeline: Timeline | None = None) -> str:
    from .mermaid import plan_markdown

    return plan_markdown(plan, graph, timeline=timeline)


PLAN_RENDERERS: dict[str, Callable[[Plan, ProjectGraph, Timeline | None], str]] = {
    "text": render_plan_text,
    "json": render_plan_json,
    "markdown": render_plan_markdown,
}
