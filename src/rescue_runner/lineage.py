"""Pure graph code over ``parents`` maps (unique_id -> parent ids): ancestry and ordering.

Everything here is linear in the part of the graph it touches: one memoised sweep
upwards from the selected nodes, never a full-graph walk per node.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

Parents = Mapping[str, Collection[str]]

_EMPTY: frozenset[str] = frozenset()


class CycleError(ValueError):
    """The parents map has a cycle (a broken manifest: dbt refuses to run one)."""


def children_map(parents: Parents) -> dict[str, list[str]]:
    """Invert a parents map: id -> sorted child ids (only ids that have children)."""
    kids: dict[str, list[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            kids.setdefault(p, []).append(child)
    for lst in kids.values():
        lst.sort()
    return kids


def ancestors(ids: Iterable[str], parents: Parents) -> set[str]:
    """All ancestors of ``ids`` (not the ids themselves, unless one is an ancestor of another)."""
    return _reach(ids, parents)


def descendants(ids: Iterable[str], parents: Parents) -> set[str]:
    """All descendants of ``ids`` (not the ids themselves, unless one descends from another)."""
    return _reach(ids, children_map(parents))


def _reach(ids: Iterable[str], edges: Mapping[str, Collection[str]]) -> set[str]:
    seen: set[str] = set()
    stack = [n for i in ids for n in edges.get(i, ())]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(edges.get(n, ()))
    return seen


def induced_dependencies(selected: Collection[str], parents: Parents) -> dict[str, set[str]]:
    """For each selected node, its nearest selected ancestors.

    A selected ``A`` is a dependency of a selected ``B`` when a path ``A -> ... -> B``
    exists whose intermediate nodes are all unselected. The transitive closure of this
    relation is exactly "A is an ancestor of B" among the selected nodes.
    """
    sel = set(selected)
    # memo[x] for an UNSELECTED x: the nearest selected ancestors of x. Nodes with a
    # single contributing parent share that parent's frozenset instead of copying it.
    memo: dict[str, frozenset[str]] = {}

    def nearest_of(node: str) -> frozenset[str]:
        ps = parents.get(node, ())
        picked = [p for p in ps if p in sel]
        subs = {id(s): s for p in ps if p not in sel for s in (memo[p],) if s}
        if not picked and not subs:
            return _EMPTY
        if not picked and len(subs) == 1:
            return next(iter(subs.values()))
        return frozenset(picked).union(*subs.values())

    def fill(start: str) -> None:
        # Iterative post-order DFS over unselected ancestors (graphs can be deep).
        on_stack = {start}
        stack = [(start, iter(parents.get(start, ())))]
        while stack:
            node, it = stack[-1]
            for p in it:
                if p in sel or p in memo:
                    continue
                if p in on_stack:
                    raise CycleError(f"cycle in the graph through {p!r}")
                on_stack.add(p)
                stack.append((p, iter(parents.get(p, ()))))
                break
            else:
                stack.pop()
                on_stack.discard(node)
                memo[node] = nearest_of(node)

    deps: dict[str, set[str]] = {}
    for s in sorted(sel):
        for p in parents.get(s, ()):
            if p not in sel and p not in memo:
                fill(p)
        found = set(nearest_of(s))
        if s in found:
            raise CycleError(f"cycle in the graph through {s!r}")
        deps[s] = found
    return deps


def order_from_dependencies(deps: Mapping[str, Collection[str]]) -> list[str]:
    """A deterministic topological order of ``deps`` (node -> its dependencies) that keeps lineage together.

    Weakly connected components come one after another (ordered by their smallest id).
    Inside one, a depth-first Kahn walk: when a node is emitted, the children it made
    ready are taken next, so a model is followed by its subtree, not by its level-mates.
    The order depends only on the ids and edges, never on dict insertion order.
    """
    nodes = sorted(deps)
    kids: dict[str, list[str]] = {n: [] for n in nodes}
    indegree = dict.fromkeys(nodes, 0)
    for n in nodes:
        for d in deps[n]:
            if d in kids:
                kids[d].append(n)
                indegree[n] += 1
    for lst in kids.values():
        lst.sort(reverse=True)  # pushed in reverse: the smallest ready child pops first

    component = _components(nodes, deps)
    roots_by_comp: dict[str, list[str]] = {}
    for n in nodes:
        if indegree[n] == 0:
            roots_by_comp.setdefault(component[n], []).append(n)

    order: list[str] = []
    for comp in sorted(roots_by_comp):
        stack = sorted(roots_by_comp[comp], reverse=True)
        while stack:
            n = stack.pop()
            order.append(n)
            for c in kids[n]:
                indegree[c] -= 1
                if indegree[c] == 0:
                    stack.append(c)
    if len(order) != len(nodes):
        stuck = sorted(n for n in nodes if indegree[n] > 0)
        raise CycleError(f"cycle among the selected nodes: {', '.join(stuck[:5])}")
    return order


def _components(nodes: Sequence[str], deps: Mapping[str, Collection[str]]) -> dict[str, str]:
    """Node -> the smallest id of its weakly connected component (union-find)."""
    up = {n: n for n in nodes}

    def find(x: str) -> str:
        while up[x] != x:
            up[x] = up[up[x]]
            x = up[x]
        return x

    for n in nodes:
        for d in deps[n]:
            if d in up:
                a, b = find(n), find(d)
                if a != b:
                    up[max(a, b)] = min(a, b)
    return {n: find(n) for n in nodes}


def selected_order(selected: Collection[str], parents: Parents) -> list[str]:
    """The selected nodes in a deterministic order where every ancestor comes first.

    ``A`` precedes ``B`` whenever ``A`` is an ancestor of ``B`` through any path,
    including paths through unselected nodes. See ``order_from_dependencies``.
    """
    return order_from_dependencies(induced_dependencies(selected, parents))


def lineage_levels(selected: Collection[str], parents: Parents) -> list[list[str]]:
    """Selected nodes by lineage level: level 0 has no selected ancestor; each level sorted."""
    deps = induced_dependencies(selected, parents)
    level: dict[str, int] = {}
    for n in order_from_dependencies(deps):
        level[n] = 1 + max((level[d] for d in deps[n]), default=-1)
    out: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for n in sorted(level):
        out[level[n]].append(n)
    return out
