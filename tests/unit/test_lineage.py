"""lineage: ordering and nearest-selected-ancestor properties on random DAGs, plus edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.dags import Case, ancestors_oracle, dags, shuffled

from rescue_runner.lineage import (
    CycleError,
    ancestors,
    children_map,
    descendants,
    induced_dependencies,
    lineage_levels,
    selected_order,
)

PROPS = settings(max_examples=300, deadline=None)


@PROPS
@given(dags())
def test_order_puts_every_selected_ancestor_first(case: Case) -> None:
    order = selected_order(case.selected, case.parents)
    assert sorted(order) == sorted(case.selected)
    pos = {m: i for i, m in enumerate(order)}
    anc = ancestors_oracle(case.parents)
    for b in case.selected:
        for a in anc[b] & case.selected:
            assert pos[a] < pos[b], f"{a} is an ancestor of {b}"


@PROPS
@given(dags())
def test_induced_dependencies_are_the_nearest_selected_ancestors(case: Case) -> None:
    deps = induced_dependencies(case.selected, case.parents)
    anc = ancestors_oracle(case.parents)
    for b in case.selected:
        selected_above = anc[b] & case.selected
        # nearest: reached from b going upwards through unselected nodes only
        expected: set[str] = set()
        stack, seen = list(case.parents[b]), set()
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            if p in case.selected:
                expected.add(p)
            else:
                stack.extend(case.parents.get(p, ()))
        assert deps[b] == expected
        # the transitive closure of deps is exactly the selected ancestry
        closure: set[str] = set()
        stack = list(deps[b])
        while stack:
            a = stack.pop()
            if a not in closure:
                closure.add(a)
                stack.extend(deps[a])
        assert closure == selected_above


@PROPS
@given(dags(), st.integers(0, 10_000))
def test_order_ignores_dict_insertion_order(case: Case, seed: int) -> None:
    again = selected_order(sorted(case.selected, reverse=True), shuffled(case.parents, seed))
    assert selected_order(case.selected, case.parents) == again


@PROPS
@given(dags())
def test_levels_partition_the_selection_by_longest_selected_path(case: Case) -> None:
    levels = lineage_levels(case.selected, case.parents)
    level = {m: i for i, lvl in enumerate(levels) for m in lvl}
    assert sorted(level) == sorted(case.selected)
    assert all(lvl == sorted(lvl) and lvl for lvl in levels)
    deps = induced_dependencies(case.selected, case.parents)
    for m, ds in deps.items():
        assert level[m] == (1 + max(level[d] for d in ds) if ds else 0)


@PROPS
@given(dags(shape="tree", max_nodes=40))
def test_on_a_fully_selected_tree_every_subtree_is_contiguous(case: Case) -> None:
    models = [m for m in case.parents if m.startswith("model.")]
    order = selected_order(models, case.parents)
    pos = {m: i for i, m in enumerate(order)}
    model_parents = {m: {p for p in case.parents[m] if p.startswith("model.")} for m in models}
    for m in models:
        sub = descendants([m], model_parents) | {m}
        span = sorted(pos[x] for x in sub)
        assert span == list(range(pos[m], pos[m] + len(sub)))


def test_through_unselected_nodes() -> None:
    parents = {"a": (), "x": ("a",), "y": ("x",), "b": ("y",), "c": ("b", "a"), "z": ("c",)}
    assert induced_dependencies({"a", "b", "c"}, parents) == {"a": set(), "b": {"a"}, "c": {"a", "b"}}
    # b sorts before a by name but a is its ancestor through x and y
    assert selected_order({"b", "a"}, {"a": (), "x": ("a",), "b": ("x",)}) == ["a", "b"]


def test_components_stay_together_and_subtrees_follow_their_root() -> None:
    parents = {
        "a1": (),
        "a2": ("a1",),
        "a3": ("a2",),
        "b1": (),
        "b2": ("b1",),
        "a4": ("a1",),
    }
    assert selected_order(parents, parents) == ["a1", "a2", "a3", "a4", "b1", "b2"]


def test_unknown_ids_are_roots_and_empty_selection_is_empty() -> None:
    assert selected_order({"ghost"}, {}) == ["ghost"]
    assert selected_order(set(), {"a": ()}) == []
    assert lineage_levels(set(), {"a": ()}) == []


def test_cycles_are_reported() -> None:
    with pytest.raises(CycleError):
        selected_order({"a", "b"}, {"a": ("b",), "b": ("a",)})
    with pytest.raises(CycleError):  # through unselected nodes only
        selected_order({"a"}, {"a": ("x",), "x": ("y",), "y": ("x",)})
    with pytest.raises(CycleError):  # back to itself through an unselected node
        selected_order({"a"}, {"a": ("x",), "x": ("a",)})


def test_ancestors_descendants_children() -> None:
    parents = {"a": (), "b": ("a",), "c": ("b",), "d": ("a",)}
    assert ancestors(["c"], parents) == {"a", "b"}
    assert descendants(["a"], parents) == {"b", "c", "d"}
    assert children_map(parents) == {"a": ["b", "d"], "b": ["c"]}


def test_deep_chain_does_not_recurse() -> None:
    n = 20_000
    parents = {f"m{i}": (f"m{i - 1}",) if i else () for i in range(n)}
    order = selected_order({"m0", f"m{n - 1}"}, parents)
    assert order == ["m0", f"m{n - 1}"]
