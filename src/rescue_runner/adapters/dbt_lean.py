"""Less of dbt's per-invocation graph work in a one-batch ``dbt build`` on a large project.

Every ``dbt build`` of a loaded manifest re-does work proportional to the whole project,
however small the batch. Measured on a 5,000-model project (10,000 nodes), one-model batch,
quiet 2-core machine, of a 2.3 s build:

* 0.4-0.5 s: ``Linker.get_graph_summary``, called twice per build, serialises every node
  with ``to_dict`` only to write ``graph_summary.json``, a diagnostics file in the
  invocation's target folder that dbt itself never reads (the flow's target folder is a
  temporary directory). Within ``lean_invocations`` it writes an empty summary.
* 0.2-0.4 s: ``Graph.get_subset_graph`` copies the whole graph, then contracts the nodes
  not selected one by one. Only nodes lying on a path between two selected nodes can add an
  edge to the result, so the same algorithm (dbt's own, unchanged) runs on the subgraph of
  the selected nodes and the nodes between them: the same nodes, the same edges with the
  same data (``tests/integration/test_dbt_lean.py`` compares both on real manifests).

* ``dbt docs generate --select ... --no-compile`` ignores its selection: the selection is
  applied while compiling, so without compiling dbt reads the catalog of every relation in
  every schema of the project and writes all of it to ``catalog.json`` (the batch's models
  are in it, with thousands of others). Within ``lean_invocations`` a docs invocation with a
  selection (and no compile) selects first, as a compiling one does, without compiling any
  node: dbt then asks the warehouse for the selected relations only and ``catalog.json``
  holds the batch, as the flow promises.

All are internal dbt APIs: the hooks apply only to the dbt-core minor version they were
written for (``SUPPORTED``); otherwise, and on any unexpected error inside a hook, dbt's own
code runs. Nothing here changes which nodes are selected, built or tested.
``RESCUE_DBT_LEAN=off`` switches the hooks (and the flow's ``--cache-selected-only``) off:
dbt's own path everywhere, for a comparison or should a dbt patch release surprise us.

Evaluated and left out (figures of the same project): caching dbt's linked graph per parse
key saves about 0.08 s (linking and test edges take 0.13 s, loading and copying a pickled
graph 0.05 s), not worth a second cache entry; the parse cache's pickle (protocol 5, 14 MB)
loads in 0.4 s, mostly object construction that any other format would pay as well.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

SUPPORTED = "1.11."  # dbt-core minor version the hooks were written against
SWITCH_ENV = "RESCUE_DBT_LEAN"


def _dbt_version() -> str:
    try:
        from dbt.version import __version__
    except Exception:  # no dbt, or an unexpected layout: no hooks
        return ""
    return str(__version__)


def enabled() -> bool:
    """True unless ``RESCUE_DBT_LEAN`` switches the hooks off."""
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in ("off", "0", "false", "no")


def supported() -> bool:
    """True when the hooks are enabled and this dbt-core is the version they were written for."""
    return enabled() and _dbt_version().startswith(SUPPORTED)


@contextlib.contextmanager
def lean_invocations() -> Iterator[None]:
    """Within the block, dbt invocations skip the diagnostic graph summary, cut the selected
    subgraph from the part of the graph that can matter, and a docs invocation without
    compiling honours its selection (see the module docs)."""
    if not supported():
        yield
        return
    from dbt.compilation import Linker
    from dbt.graph.graph import Graph
    from dbt.task.docs.generate import GenerateTask

    summary, subset, generate = Linker.get_graph_summary, Graph.get_subset_graph, GenerateTask.run

    def get_graph_summary(self: Any, manifest: Any) -> dict[int, dict[str, Any]]:
        return {}

    def get_subset_graph(self: Any, selected: Iterable[Any]) -> Any:
        selected = set(selected)
        try:
            narrowed = Graph(between(self.graph, selected))
        except Exception:  # anything unexpected: dbt's own path on the whole graph
            return subset(self, selected)
        return subset(narrowed, selected)

    def run(self: Any) -> Any:
        args = self.args
        if (not getattr(args, "compile", True) and self.job_queue is None
                and (getattr(args, "select", None) or getattr(args, "selector", None))):
            try:
                from dbt_common.events.contextvars import task_contextvars

                # As dbt's own RunnableTask.run does: path: selectors resolve against the project
                # root only inside this context (else against the process's working directory).
                with task_contextvars(project_root=self.config.project_root):
                    self._runtime_initialize()  # links the graph and selects; compiles nothing
            except Exception:  # anything unexpected: dbt's own (unselected) catalog
                self.job_queue = None
        return generate(self)

    Linker.get_graph_summary = get_graph_summary  # type: ignore[method-assign]
    Graph.get_subset_graph = get_subset_graph  # type: ignore[method-assign]
    GenerateTask.run = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        Linker.get_graph_summary = summary  # type: ignore[method-assign]
        Graph.get_subset_graph = subset  # type: ignore[method-assign]
        GenerateTask.run = generate  # type: ignore[method-assign]


def between(graph: Any, selected: set[Any]) -> Any:
    """The subgraph of ``graph`` (a networkx DiGraph) holding ``selected`` and every node that
    lies on a path from one selected node to another; node order, node and edge data kept.

    A selected node missing from the graph raises networkx's error (dbt's own path then
    reports it in its words).
    """
    down = _reach(graph.successors, selected)
    up = _reach(graph.predecessors, selected)
    keep = selected | (down & up)
    import networkx as nx

    out = nx.DiGraph()
    out.graph.update(graph.graph)
    out.add_nodes_from((n, d) for n, d in graph.nodes(data=True) if n in keep)
    out.add_edges_from((u, v, d) for u in out for v, d in graph.adj[u].items() if v in keep)
    return out


def _reach(step: Any, start: set[Any]) -> set[Any]:
    seen: set[Any] = set()
    stack = list(start)
    while stack:
        for nxt in step(stack.pop()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen
