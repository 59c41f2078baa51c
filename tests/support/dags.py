"""Hypothesis strategies for random dbt-like graphs, and brute-force oracles to check against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from rescue_runner.model import NodeInfo, ProjectGraph


@dataclass(frozen=True)
class Case:
    """A parents map (sources, models, tests mixed) and a selection of its models."""

    parents: dict[str, tuple[str, ...]]
    selected: frozenset[str]


def _names(n: int) -> list[str]:
    return [f"model.pkg.m{i:03d}" for i in range(n)]


@st.composite
def dags(draw: st.DrawFn, *, max_nodes: int = 30, shape: str = "dag", min_selected: int = 0) -> Case:
    """A random DAG. ``shape``: ``dag`` (up to 4 parents), ``tree`` (one parent) or ``chain``.

    Names are shuffled against the generation order, so sorted ids are not a topological
    order; some roots are sources and some leaves are tests, as in a manifest.
    """
    n = draw(st.integers(min_value=max(1, min_selected), max_value=max_nodes))
    names = draw(st.permutations(_names(n)))
    parents: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(names):
        if i == 0:
            picked: list[int] = []
        elif shape == "chain":
            picked = [i - 1]
        elif shape == "tree":
            picked = [draw(st.integers(0, i - 1))]
        else:
            picked = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=min(i, 4)))
        parents[name] = tuple(sorted(names[j] for j in picked))
    sources = [f"source.pkg.raw.s{i}" for i in range(draw(st.integers(0, 3)))]
    for s in sources:
        parents[s] = ()
        child = draw(st.sampled_from(names))
        parents[child] = tuple(sorted((*parents[child], s)))
    for i in range(draw(st.integers(0, 3))):
        parents[f"test.pkg.t{i}"] = (draw(st.sampled_from(names)),)
    selected = draw(st.sets(st.sampled_from(names), min_size=min_selected))
    return Case(parents, frozenset(selected))


def shuffled(parents: Mapping[str, Sequence[str]], seed: int) -> dict[str, tuple[str, ...]]:
    """The same graph with another dict insertion order and parent order."""
    import random

    rng = random.Random(seed)
    keys = list(parents)
    rng.shuffle(keys)
    out = {}
    for k in keys:
        ps = list(parents[k])
        rng.shuffle(ps)
        out[k] = tuple(ps)
    return out


def ancestors_oracle(parents: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
    """Every node's full ancestor set, by plain DFS from each node (fine for small graphs)."""
    out: dict[str, set[str]] = {}
    for node in parents:
        seen: set[str] = set()
        stack = list(parents[node])
        while stack:
            p = stack.pop()
            if p not in seen:
                seen.add(p)
                stack.extend(parents.get(p, ()))
        out[node] = seen
    return out


def graph_of(parents: Mapping[str, Sequence[str]], identity: str = "sha256:test") -> ProjectGraph:
    """A ProjectGraph whose models are the ``model.`` ids of ``parents``."""
    nodes = {
        uid: NodeInfo(uid, uid.rsplit(".", 1)[-1], "model", materialized="incremental")
        for uid in parents
        if uid.startswith("model.")
    }
    return ProjectGraph(nodes=nodes, parents={k: tuple(v) for k, v in parents.items()}, identity=identity)
