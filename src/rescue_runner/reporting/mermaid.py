"""A Plan as Mermaid diagrams (gantt of batches, lineage flowchart) and a Markdown summary.

Node ids are generated (``n1``, ``n2`` ...), never taken from model names, and every
label is reduced to a safe alphabet with Mermaid entity codes for the rest, so no
model name can break a diagram.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ..lineage import induced_dependencies
from ..model import Plan, PlannedBatch, ProjectGraph
from ..windows import Timeline
from .units import duration as _duration

MAX_NODES = 150  # flowchart nodes drawn; the rest are summarised in one note
MAX_BARS = 60  # gantt batch bars; later batches are drawn as one summary bar
_RELATIVE_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # axis origin when no start is given
_DATE_FMT = "%Y-%m-%d %H:%M:%S"
# Fill colours per batch (cycled), readable with black text; full-refresh batches get a red border.
_PALETTE = (
    "#cfe2ff",
    "#d1f2d9",
    "#ffe8b3",
    "#f8d0e6",
    "#d9d2f5",
    "#c8eef0",
    "#ffd8c2",
    "#e4edc4",
    "#e6e6e6",
    "#f5d5d5",
)
_SAFE_LABEL = re.compile(r"[^A-Za-z0-9_ .\-/]")
_SAFE_TASK = re.compile(r"[^A-Za-z0-9_ .\-/()+,]")


def _label(text: str) -> str:
    """Text safe inside a quoted Mermaid label: anything unusual becomes an entity code."""
    return _SAFE_LABEL.sub(lambda m: f"#{ord(m.group())};", text)


def _task_text(text: str) -> str:
    """Text safe as a gantt task name (no ``:``, ``#``, ``;``; entity codes are not rendered there)."""
    return _SAFE_TASK.sub("_", text)


def _name(uid: str, graph: ProjectGraph | None) -> str:
    info = graph.nodes.get(uid) if graph is not None else None
    return info.name if info is not None else uid.rsplit(".", 1)[-1]


def _count(n: int) -> str:
    return f"{n} model" if n == 1 else f"{n} models"


def _offset(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"+{h}:{m:02d}:{s:02d}" if h else f"+{m:02d}:{s:02d}"


def gantt(plan: Plan, start: datetime | None = None) -> str:
    """A Mermaid gantt chart: one bar per batch (its estimate), grey bars for the pauses.

    Without ``start`` the axis counts from 00:00 (time since the plan starts); with
    one, times are UTC.
    """
    origin = _RELATIVE_ORIGIN if start is None else start.astimezone(UTC).replace(microsecond=0)
    total = _span(plan)
    when = "from plan start" if start is None else f"from {origin.strftime('%Y-%m-%d %H:%M')} UTC"
    lines = [
        "gantt",
        f"    title {_task_text(plan.request_id)} - {len(plan.batches)} batches, "
        f"est. {_duration(total)} {when}",
        "    dateFormat YYYY-MM-DD HH:mm:ss",
        f"    axisFormat {'%H:%M' if start is None and total < 86400 else '%m-%d %H:%M'}",
        "    todayMarker off",
        "    section Batches",
    ]

    def bar(text: str, tag: str, begin: float, seconds: float) -> str:
        a = origin + timedelta(seconds=round(begin))
        b = a + timedelta(seconds=max(1, round(seconds)))  # a zero-length bar is not drawn
        tags = f"{tag}, " if tag else ""
        return f"    {_task_text(text)} :{tags}{a.strftime(_DATE_FMT)}, {b.strftime(_DATE_FMT)}"

    shown = plan.batches[:MAX_BARS]
    for b in shown:
        fr = ", full refresh" if b.full_refresh else ""
        lines.append(
            bar(
                f"Batch {b.index} - {_count(len(b.models))}{fr}, {_duration(b.estimated_seconds)}",
                "crit" if b.full_refresh else "",
                b.start_offset_seconds,
                b.estimated_seconds,
            )
        )
        if plan.pause_seconds > 0 and b.index < len(plan.batches):
            lines.append(
                bar(
                    f"pause {_duration(plan.pause_seconds)}",
                    "done",
                    b.start_offset_seconds + b.estimated_seconds,
                    plan.pause_seconds,
                )
            )
    rest = plan.batches[MAX_BARS:]
    if rest:
        begin = rest[0].start_offset_seconds
        end = rest[-1].start_offset_seconds + rest[-1].estimated_seconds
        lines.append(
            bar(
                f"Batches {rest[0].index}-{rest[-1].index} ({len(rest)} more, with pauses)",
                "active",
                begin,
                end - begin,
            )
        )
    return "\n".join(lines) + "\n"


def _span(plan: Plan) -> float:
    if not plan.batches:
        return 0.0
    last = plan.batches[-1]
    return last.start_offset_seconds + last.estimated_seconds


def _reduced(drawn: list[str], deps: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """Transitive reduction of ``deps`` among ``drawn`` (in lineage order): fewer, clearer arrows."""
    bit = {uid: 1 << i for i, uid in enumerate(drawn)}
    above: dict[str, int] = {}  # bitset of drawn ancestors
    for uid in drawn:
        mask = 0
        for d in deps.get(uid, ()):
            if d in bit:
                mask |= bit[d] | above[d]
        above[uid] = mask
    out: dict[str, list[str]] = {}
    for uid in drawn:
        direct = [d for d in deps.get(uid, ()) if d in bit]
        implied = 0
        for d in direct:
            implied |= above[d]
        out[uid] = sorted((d for d in direct if not implied & bit[d]), key=bit.__getitem__)
    return out


def lineage_flowchart(plan: Plan, graph: ProjectGraph, *, max_nodes: int = MAX_NODES) -> str:
    """A Mermaid ``flowchart LR`` of the planned models, one box and one colour per batch.

    Arrows are the dependencies between selected models (also through unselected
    models), transitively reduced. At most ``max_nodes`` models are drawn, the first
    ones in plan order (so every drawn model's drawn ancestors are there too).
    """
    models = list(plan.models)
    drawn = models[:max_nodes]
    deps = induced_dependencies(models, graph.parents)
    ids = {uid: f"n{i}" for i, uid in enumerate(drawn, start=1)}

    used = [b for b in plan.batches if any(uid in ids for uid in b.models)]
    lines = ["flowchart LR"]
    for b in used:
        title = f"Batch {b.index}" + (" - full refresh" if b.full_refresh else "")
        lines.append(f'    subgraph B{b.index}["{title}"]')
        for uid in b.models:
            if uid in ids:
                lines.append(f'        {ids[uid]}["{_label(_name(uid, graph))}"]')
        lines.append("    end")
    if len(models) > len(drawn):
        lines.append(f'    more["{len(models) - len(drawn)} more not drawn"]')
    for uid, parents in _reduced(drawn, deps).items():
        for p in parents:
            lines.append(f"    {ids[p]} --> {ids[uid]}")
    for b in used:
        fill = _PALETTE[(b.index - 1) % len(_PALETTE)]
        border = "stroke:#c62828,stroke-width:3px" if b.full_refresh else "stroke:#555,stroke-width:1px"
        lines.append(f"    classDef b{b.index} fill:{fill},{border},color:#000")
        lines.append(f"    style B{b.index} fill:#fafafa,stroke:#bbb,color:#333")
    for b in used:
        members = ",".join(ids[uid] for uid in b.models if uid in ids)
        lines.append(f"    class {members} b{b.index}")
    if len(models) > len(drawn):
        lines.append("    classDef note fill:#fff,stroke:#999,stroke-dasharray:4 3,color:#555")
        lines.append("    class more note")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _models_cell(b: PlannedBatch, graph: ProjectGraph) -> str:
    names = [_name(uid, graph) for uid in b.models]
    if len(names) <= 3:
        return f"{len(names)}: " + ", ".join(f"`{n}`" for n in names)
    return f"{len(names)}: `{names[0]}`, `{names[1]}` … `{names[-1]}`"


def plan_markdown(plan: Plan, graph: ProjectGraph, start: datetime | None = None,
                  timeline: Timeline | None = None) -> str:
    """The plan for a pull-request comment: batch table, totals, both diagrams, warnings.

    With a ``timeline`` (a request with a window) the "Starts at" column shows the expected
    start of each batch in the request's zone, UTC beside it.
    """
    out = [f"### Plan `{_cell(plan.request_id)}`", "", f"Fingerprint: `{plan.fingerprint}`", ""]
    if plan.batches:
        out += [
            "| Batch | Models | Full refresh | Estimate | Starts at |",
            "|---:|---|:---:|---:|---:|",
        ]
        for b in plan.batches:
            unknown = f" ({len(b.unknown_estimates)} assumed)" if b.unknown_estimates else ""
            out.append(
                f"| {b.index} | {_cell(_models_cell(b, graph))} | {'yes' if b.full_refresh else 'no'} "
                f"| {_duration(b.estimated_seconds)}{unknown} "
                f"| {timeline.show(b.index) if timeline else _offset(b.start_offset_seconds)} |"
            )
        out.append("")
    pauses = max(0, len(plan.batches) - 1)
    total = f"**Total estimate:** {_duration(plan.estimated_seconds)} in {len(plan.batches)} batch(es), "
    total += f"{len(plan.models)} model(s)"
    if pauses and plan.pause_seconds:
        total += (
            f", plus {pauses} pause(s) of {_duration(plan.pause_seconds)}: "
            f"{_duration(_span(plan))} end to end"
        )
    out += [total, ""]
    if plan.batches:
        out += ["```mermaid", gantt(plan, start).rstrip("\n"), "```", ""]
        out += ["```mermaid", lineage_flowchart(plan, graph).rstrip("\n"), "```", ""]
    if plan.warnings:
        out += ["**Warnings**", ""] + [f"- {_cell(w)}" for w in plan.warnings] + [""]
    out += _downstream_markdown(plan)
    return "\n".join(out)


def _downstream_markdown(plan: Plan, limit: int = 20) -> list[str]:
    """The tables the plan leaves stale (RR218) and those excluded on purpose."""
    d, out = plan.downstream, []

    def listed(ids: tuple[str, ...]) -> str:
        more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
        return ", ".join(f"`{_cell(m.rsplit('.', 1)[-1])}`" for m in ids[:limit]) + more

    if d.stale:
        source = f", built from the old {listed(d.feeding)}" if d.feeding else ""
        out += [f"**Stale after this rescue:** {len(d.stale)} downstream table(s) not rebuilt{source}: "
                f"{listed(d.stale)}", ""]
    if d.excluded:
        out += [f"**Excluded on purpose** (stay stale): {listed(d.excluded)}", ""]
    return out
