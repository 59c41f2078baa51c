"""Which tables a rescue leaves stale: descendants of the selection that hold data (pure).

After a rescue rebuilds the set S, every model downstream of S that stores its own copy
of data (a table, an incremental model, a snapshot, a materialized view...) still holds
what it computed from the old S until it is rebuilt too. Views and ephemeral models hold
nothing: they read through to S and show the new data at once, so they are followed, never
reported. ``excluded`` are the models the request's ``exclude`` removed on purpose: they are
reported apart, as a decision rather than an oversight.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .lineage import ancestors, children_map
from .model import Downstream, NodeInfo, ProjectGraph

# Materializations that store nothing of their own.
READ_THROUGH = frozenset({"view", "ephemeral"})


def holds_data(node: NodeInfo) -> bool:
    """A snapshot, or a model that is not a view or ephemeral (custom materializations store data)."""
    if node.resource_type == "snapshot":
        return True
    return node.resource_type == "model" and (node.materialized or "table") not in READ_THROUGH


def stale_downstream(selected: Collection[str], graph: ProjectGraph,
                     excluded: Collection[str] = ()) -> Downstream:
    """The data-holding descendants of ``selected`` that the selection leaves stale."""
    sel = set(selected)
    if not sel:
        return Downstream()
    kids = children_map(graph.parents)
    reach: set[str] = set()
    stack = [c for s in sel for c in kids.get(s, ())]
    while stack:
        n = stack.pop()
        if n not in reach and n not in sel:
            reach.add(n)
            stack.extend(kids.get(n, ()))
    holding = {n for n in reach if n in graph.nodes and holds_data(graph.nodes[n])}
    out = set(excluded) & holding
    stale = holding - out
    upstream = ancestors(holding, graph.parents) | holding
    feeding = {s for s in sel if any(c in upstream and c not in sel for c in kids.get(s, ()))}
    return Downstream(_by_name(stale, graph), _by_name(out, graph), _by_name(feeding, graph))


def including_selection(select: Sequence[str]) -> tuple[str, ...]:
    """The request's selectors with their whole downstream (``stg_payments`` -> ``stg_payments+``)."""
    out = []
    for item in select:
        head, plus, depth = item.rpartition("+")
        if plus and (depth == "" or depth.isdigit()) and head and not head.endswith(","):
            item = head  # `a+` or `a+2`: drop the depth limit
        out.append(item + "+")
    return tuple(dict.fromkeys(out))


def _by_name(ids: Collection[str], graph: ProjectGraph) -> tuple[str, ...]:
    return tuple(sorted(ids, key=lambda u: (graph.nodes[u].name if u in graph.nodes else u, u)))
