"""dbt_lean's hooks: dbt's own subset graph, cut from a smaller graph, is the same graph."""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.dags import Case, dags

from rescue_runner.adapters import dbt_lean

PROPS = settings(max_examples=60, deadline=None)


def _digraph(case: Case, tested: frozenset[str]) -> nx.DiGraph:
    """A graph as dbt links it: an edge parent -> child; some edges carry dbt's test-edge data."""
    g = nx.DiGraph()
    for node, parents in case.parents.items():
        g.add_node(node)
        for p in parents:
            g.add_edge(p, node, **({"edge_type": "parent_test"} if node in tested else {}))
    return g


def _shape(g: Any) -> tuple[list[str], list[tuple[str, str, dict[str, Any]]]]:
    """Nodes in order and edges with their data: everything dbt's GraphQueue reads."""
    return list(g.nodes), sorted((u, v, dict(d)) for u, v, d in g.edges(data=True))


@PROPS
@given(dags(max_nodes=30), st.data())
def test_subset_graph_is_dbts_own(case: Case, data: st.DataObject) -> None:
    from dbt.graph.graph import Graph

    tested = frozenset(data.draw(st.sets(st.sampled_from(sorted(case.parents)))))
    full = Graph(_digraph(case, tested))
    expected = _shape(full.get_subset_graph(case.selected).graph)
    with dbt_lean.lean_invocations():
        got = _shape(full.get_subset_graph(case.selected).graph)
    assert got == expected
    assert _shape(full.graph) == _shape(_digraph(case, tested))  # the input graph is untouched


def test_unknown_node_is_reported_by_dbt() -> None:
    from dbt.graph.graph import Graph

    g = Graph(nx.DiGraph([("a", "b")]))
    with pytest.raises(ValueError, match="Couldn't find model 'nope'"), dbt_lean.lean_invocations():
        g.get_subset_graph({"a", "nope"})


def test_hooks_are_scoped_and_version_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt.compilation import Linker
    from dbt.graph.graph import Graph

    original = (Linker.get_graph_summary, Graph.get_subset_graph)
    with dbt_lean.lean_invocations():
        assert (Linker.get_graph_summary, Graph.get_subset_graph) != original
        assert Linker().get_graph_summary(None) == {}
    assert (Linker.get_graph_summary, Graph.get_subset_graph) == original

    monkeypatch.setattr(dbt_lean, "_dbt_version", lambda: "1.12.0")  # not what the hooks know
    with dbt_lean.lean_invocations():
        assert (Linker.get_graph_summary, Graph.get_subset_graph) == original
    monkeypatch.undo()
    monkeypatch.setenv(dbt_lean.SWITCH_ENV, "off")
    assert not dbt_lean.enabled()
    with dbt_lean.lean_invocations():
        assert (Linker.get_graph_summary, Graph.get_subset_graph) == original


def test_between_keeps_only_paths_between_selected_nodes() -> None:
    g = nx.DiGraph([("a", "x"), ("x", "b"), ("b", "y"), ("c", "z"), ("a", "b")])
    g.add_edge("a", "b", edge_type="parent_test")
    cut = dbt_lean.between(g, {"a", "b"})
    assert list(cut.nodes) == ["a", "x", "b"]  # y, c, z lie on no a/b path
    assert cut.edges["a", "b"] == {"edge_type": "parent_test"}
