"""reporting.mermaid: diagrams are well formed, sanitised and capped."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from support.dags import graph_of

from rescue_runner.estimates import Estimates
from rescue_runner.model import BatchSpec, NodeInfo, Plan, ProjectGraph, Request
from rescue_runner.planner import build_plan
from rescue_runner.reporting.mermaid import MAX_NODES, gantt, lineage_flowchart, plan_markdown

NASTY = ['we"ird', "a[b]c", "x --> y", "end", "<script>", "semi;colon:#hash", "ünï", "pipe|name", "%%c"]


def request(**batches: float) -> Request:
    return Request(
        id="rescue: #1",
        path="requests/r.yaml",
        version=1,
        reason="t",
        requested_by="me",
        select=("x",),
        batches=BatchSpec(**batches) if batches else None,  # type: ignore[arg-type]
        content_hash="sha256:r",
    )


def nasty_graph() -> ProjectGraph:
    ids = [f"model.p.n{i}" for i in range(len(NASTY))]
    parents = {uid: ((ids[i - 1],) if i else ()) for i, uid in enumerate(ids)}
    nodes = {uid: NodeInfo(uid, name, "model") for uid, name in zip(ids, NASTY, strict=True)}
    return ProjectGraph(nodes, parents, "sha256:g")


def nasty_plan(graph: ProjectGraph) -> Plan:
    fr = [uid for uid in graph.nodes if uid.endswith(("7", "8"))]
    return build_plan(
        request(max_models=3, pause_minutes=5),
        graph.nodes,
        graph,
        Estimates({"model.p.n0": 90.0}),
        full_refresh_ids=fr,
    )


def mermaid_blocks(markdown: str) -> list[str]:
    assert markdown.count("```") % 2 == 0
    return re.findall(r"```mermaid\n(.*?)\n```", markdown, flags=re.S)


def assert_balanced(diagram: str) -> None:
    for opening, closing in (("[", "]"), ("(", ")"), ("{", "}")):
        assert diagram.count(opening) == diagram.count(closing), (opening, diagram)
    for line in diagram.splitlines():
        assert line.count('"') % 2 == 0, line
    assert len(re.findall(r"^\s*subgraph ", diagram, flags=re.M)) == len(
        re.findall(r"^\s*end$", diagram, flags=re.M)
    )


def test_markdown_has_both_diagrams_well_formed() -> None:
    graph = nasty_graph()
    plan = nasty_plan(graph)
    md = plan_markdown(plan, graph)
    blocks = mermaid_blocks(md)
    assert [b.split("\n", 1)[0] for b in blocks] == ["gantt", "flowchart LR"]
    for b in blocks:
        assert_balanced(b)
    assert "| Batch | Models | Full refresh | Estimate | Starts at |" in md
    rows = [line for line in md.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(plan.batches) == 4
    assert rows[1].endswith("| +08:30 |")  # 90 s + 2 x 60 s, then a 5 min pause
    assert "pipe\\|name" in md  # table cells escape pipes
    assert "**Warnings**" in md and "no run history" in md


def test_flowchart_ids_and_labels_are_sanitised() -> None:
    graph = nasty_graph()
    chart = lineage_flowchart(nasty_plan(graph), graph)
    for line in chart.splitlines()[1:]:
        line = line.strip()
        if line.startswith(("classDef ", "style ")):
            continue
        # everything inside quotes uses a safe alphabet plus entity codes
        for label in re.findall(r'"([^"]*)"', line):
            assert re.fullmatch(r"(?:[A-Za-z0-9_ .\-/]|#\d+;)*", label), label
        outside = re.sub(r'"[^"]*"', "", line)
        assert re.fullmatch(r"[A-Za-z0-9_ ,\[\]>-]*", outside), line
    assert "#34;" in chart and "#60;script#62;" in chart and "#252;" in chart
    assert chart.count("-->") == len(NASTY) - 1
    assert "classDef b4 " in chart and "stroke:#c62828" in chart  # the full-refresh batch
    assert 'subgraph B4["Batch 4 - full refresh"]' in chart


def test_gantt_bars_pauses_and_start() -> None:
    graph = nasty_graph()
    plan = nasty_plan(graph)
    chart = gantt(plan, start=datetime(2026, 3, 29, 23, 30, tzinfo=UTC))
    assert_balanced(chart)
    bars = [line for line in chart.splitlines() if line.strip().startswith("Batch ")]
    pauses = [line for line in chart.splitlines() if line.strip().startswith("pause ")]
    assert len(bars) == 4 and len(pauses) == 3
    assert bars[0].endswith(":2026-03-29 23:30:00, 2026-03-29 23:33:30")
    assert pauses[0].endswith(":done, 2026-03-29 23:33:30, 2026-03-29 23:38:30")
    assert ":crit, " in bars[3]
    for line in chart.splitlines()[1:]:
        name = line.split(":", 1)[0] if ":" in line else line
        assert "#" not in name and ";" not in name
    assert "title rescue_ _1 - 4 batches" in chart
    relative = gantt(plan)
    assert "2000-01-01 00:00:00" in relative and "from plan start" in relative


def test_big_plans_are_capped() -> None:
    n = MAX_NODES + 40
    parents = {f"model.p.m{i:04d}": ((f"model.p.m{i - 1:04d}",) if i % 7 else ()) for i in range(n)}
    graph = graph_of(parents)
    plan = build_plan(request(max_models=2), parents, graph, Estimates())
    chart = lineage_flowchart(plan, graph)
    assert len(re.findall(r'^\s+n\d+\["', chart, flags=re.M)) == MAX_NODES
    assert 'more["40 more not drawn"]' in chart
    assert_balanced(chart)
    g = gantt(plan)
    assert "Batches 61-95 (35 more, with pauses)" in g
    assert len([line for line in g.splitlines() if line.strip().startswith("Batch ")]) == 60


def test_empty_plan_has_no_diagrams() -> None:
    graph = graph_of({"model.p.a": ()})
    md = plan_markdown(build_plan(request(), [], graph, Estimates()), graph)
    assert "```" not in md and "the selection is empty" in md
