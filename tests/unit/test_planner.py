"""planner: batching properties on random DAGs, determinism, fingerprint, and a golden plan."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support.dags import Case, ancestors_oracle, dags, graph_of, shuffled

from rescue_runner.estimates import Estimates
from rescue_runner.lineage import induced_dependencies
from rescue_runner.model import BatchSpec, NodeInfo, Plan, ProjectGraph, Request
from rescue_runner.planner import PLANNER_FORMAT, build_plan, plan_fingerprint, plan_to_json

PROPS = settings(max_examples=300, deadline=None)
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def request(
    *,
    max_models: int | None = None,
    max_minutes: float | None = None,
    pause_minutes: float = 0.0,
    full_refresh: bool = False,
    content_hash: str = "sha256:request",
) -> Request:
    batches = None
    if max_models is not None or max_minutes is not None or pause_minutes:
        batches = BatchSpec(max_models=max_models, max_minutes=max_minutes, pause_minutes=pause_minutes)
    return Request(
        id="rescue-test",
        path="requests/rescue-test.yaml",
        version=1,
        reason="test",
        requested_by="someone",
        select=("m000+",),
        full_refresh=full_refresh,
        batches=batches,
        content_hash=content_hash,
    )


def assert_lineage_respected(plan: Plan, case: Case) -> None:
    models = plan.models
    assert sorted(models) == sorted(case.selected), "every selected model exactly once"
    pos = {m: i for i, m in enumerate(models)}
    anc = ancestors_oracle(case.parents)
    for b in case.selected:
        for a in anc[b] & case.selected:
            assert pos[a] < pos[b], f"{a} is an ancestor of {b} but runs later"


def estimates_for(case: Case, data: st.DataObject) -> Estimates:
    known = data.draw(st.sets(st.sampled_from(sorted(case.selected))) if case.selected else st.just(set()))
    seconds = {m: data.draw(st.floats(0, 900, allow_nan=False)) for m in sorted(known)}
    return Estimates(seconds, default_seconds=data.draw(st.sampled_from([0.5, 60.0, 300.0])))


@PROPS
@given(dags(), st.integers(1, 8), st.data())
def test_max_models_gives_minimal_batch_count_and_respects_lineage(
    case: Case, max_models: int, data: st.DataObject
) -> None:
    plan = build_plan(request(max_models=max_models), case.selected, graph_of(case.parents), Estimates())
    assert_lineage_respected(plan, case)
    assert all(1 <= len(b.models) <= max_models for b in plan.batches)
    assert len(plan.batches) == math.ceil(len(case.selected) / max_models)


@PROPS
@given(
    st.sampled_from(["chain", "tree", "dag"]).flatmap(lambda s: dags(shape=s, max_nodes=60)),
    st.integers(1, 7),
)
def test_minimal_batch_count_on_chains_trees_and_dags(case: Case, max_models: int) -> None:
    plan = build_plan(request(max_models=max_models), case.selected, graph_of(case.parents), Estimates())
    assert len(plan.batches) == math.ceil(len(case.selected) / max_models)
    assert_lineage_respected(plan, case)


@PROPS
@given(dags(), st.one_of(st.none(), st.integers(1, 6)), st.floats(0.5, 30), st.data())
def test_max_minutes_holds_except_for_a_single_oversize_model(
    case: Case, max_models: int | None, max_minutes: float, data: st.DataObject
) -> None:
    est = estimates_for(case, data)
    plan = build_plan(
        request(max_models=max_models, max_minutes=max_minutes), case.selected, graph_of(case.parents), est
    )
    assert_lineage_respected(plan, case)
    limit = max_minutes * 60
    for b in plan.batches:
        total = math.fsum(est.for_model(m)[0] for m in b.models)
        assert b.estimated_seconds == pytest.approx(total, abs=1e-3)
        if max_models is not None:
            assert len(b.models) <= max_models
        if total > limit + 1e-6:
            assert len(b.models) == 1, "only a lone oversize model may exceed max_minutes"
            assert any(b.models[0] in w and f"batch {b.index}" in w for w in plan.warnings)
    # greedy cutting: no two neighbouring batches of the same kind could have been one
    for left, right in zip(plan.batches, plan.batches[1:], strict=False):
        if left.full_refresh == right.full_refresh:
            merged = left.estimated_seconds + est.for_model(right.models[0])[0]
            fits_count = max_models is None or len(left.models) < max_models
            assert not (fits_count and merged <= limit - 1e-6)


@PROPS
@given(dags(), st.data())
def test_offsets_and_totals_add_up(case: Case, data: st.DataObject) -> None:
    pause = data.draw(st.sampled_from([0.0, 0.5, 5.0]))
    plan = build_plan(
        request(max_models=data.draw(st.integers(1, 5)), pause_minutes=pause),
        case.selected,
        graph_of(case.parents),
        estimates_for(case, data),
    )
    assert plan.pause_seconds == pause * 60
    assert [b.index for b in plan.batches] == list(range(1, len(plan.batches) + 1))
    clock = 0.0
    for b in plan.batches:
        assert b.start_offset_seconds == pytest.approx(clock, abs=1e-3)
        clock += b.estimated_seconds + plan.pause_seconds
    assert plan.estimated_seconds == pytest.approx(sum(b.estimated_seconds for b in plan.batches), abs=1e-3)


@cache
def _min_runs(n: int, deps_bits: tuple[int, ...], kinds: tuple[bool, ...]) -> int:
    """Fewest runs of one kind over all orders respecting deps (DP over emitted sets)."""
    full = (1 << n) - 1

    @cache
    def best(mask: int, kind: bool | None) -> int:
        if mask == full:
            return 0
        options = []
        for i in range(n):
            if not mask >> i & 1 and deps_bits[i] & mask == deps_bits[i]:
                options.append(best(mask | 1 << i, kinds[i]) + (kinds[i] != kind))
        return min(options)

    return best(0, None)


@PROPS
@given(dags(max_nodes=14), st.data())
def test_full_refresh_never_mixed_and_uses_fewest_switches(case: Case, data: st.DataObject) -> None:
    selected = sorted(case.selected)
    assume(len(selected) <= 10)
    fr = data.draw(st.sets(st.sampled_from(selected)) if selected else st.just(set()))
    plan = build_plan(request(), case.selected, graph_of(case.parents), Estimates(), full_refresh_ids=fr)
    assert_lineage_respected(plan, case)
    for b in plan.batches:
        assert {m in fr for m in b.models} == {b.full_refresh}
    # no limits: one batch per run of one kind, and no order needs fewer runs
    deps = induced_dependencies(selected, case.parents)
    index = {m: i for i, m in enumerate(selected)}
    bits = tuple(sum(1 << index[d] for d in deps[m]) for m in selected)
    kinds = tuple(m in fr for m in selected)
    assert len(plan.batches) == (_min_runs(len(selected), bits, kinds) if selected else 0)


@PROPS
@given(dags(), st.integers(1, 6), st.booleans(), st.integers(0, 10_000), st.data())
def test_same_inputs_same_json_whatever_the_insertion_order(
    case: Case, max_models: int, full_refresh: bool, seed: int, data: st.DataObject
) -> None:
    est = estimates_for(case, data)
    req = request(max_models=max_models, max_minutes=5, full_refresh=full_refresh)
    first = plan_to_json(build_plan(req, case.selected, graph_of(case.parents), est))
    assert plan_to_json(build_plan(req, case.selected, graph_of(case.parents), est)) == first
    reordered = Estimates(dict(reversed(list(est.seconds.items()))), default_seconds=est.default_seconds)
    again = build_plan(
        req, sorted(case.selected, reverse=True), graph_of(shuffled(case.parents, seed)), reordered
    )
    assert plan_to_json(again) == first


def test_no_batches_spec_means_one_batch_and_full_refresh_splits_it() -> None:
    parents = {"model.p.a": (), "model.p.b": ("model.p.a",), "model.p.c": ("model.p.b",)}
    graph = graph_of(parents)
    plan = build_plan(request(), parents, graph, Estimates())
    assert [b.models for b in plan.batches] == [("model.p.a", "model.p.b", "model.p.c")]
    assert plan.pause_seconds == 0
    plan = build_plan(request(full_refresh=True), parents, graph, Estimates())
    assert [(b.full_refresh, len(b.models)) for b in plan.batches] == [(True, 3)]
    plan = build_plan(request(), parents, graph, Estimates(), full_refresh_ids=["model.p.b"])
    assert [(b.full_refresh, b.models) for b in plan.batches] == [
        (False, ("model.p.a",)),
        (True, ("model.p.b",)),
        (False, ("model.p.c",)),
    ]


def test_warnings_name_unknown_estimates_and_ignored_full_refresh() -> None:
    nodes = {
        "model.p.a": NodeInfo("model.p.a", "a", "model"),
        "model.p.b": NodeInfo("model.p.b", "b", "model", materialized="incremental", full_refresh=False),
    }
    graph = ProjectGraph(nodes, {"model.p.a": (), "model.p.b": ("model.p.a",)}, "sha256:g")
    plan = build_plan(request(full_refresh=True), nodes, graph, Estimates({"model.p.a": 10.0}))
    assert plan.batches[0].unknown_estimates == ("model.p.b",)
    assert plan.warnings[0] == "1 model has no run history; assumed 60 s"
    assert "dbt ignores --full-refresh" in plan.warnings[1] and "model.p.b" in plan.warnings[1]
    plan = build_plan(request(), nodes, graph, Estimates(default_seconds=45))
    assert plan.warnings == ("2 models have no run history; assumed 45 s each",)
    assert plan.estimated_seconds == 90


def test_empty_selection_and_bad_arguments() -> None:
    graph = graph_of({"model.p.a": ()})
    plan = build_plan(request(max_models=3), [], graph, Estimates())
    assert plan.batches == () and plan.estimated_seconds == 0
    assert plan.warnings == ("the selection is empty: nothing to run",)
    with pytest.raises(ValueError, match="outside the selection"):
        build_plan(request(), ["model.p.a"], graph, Estimates(), full_refresh_ids=["model.p.zz"])
    with pytest.raises(ValueError, match="max_models"):
        build_plan(request(max_models=0), ["model.p.a"], graph, Estimates())


def test_fingerprint_covers_what_was_reviewed_and_not_the_estimates() -> None:
    parents = {"source.p.raw": (), "model.p.a": ("source.p.raw",), "model.p.b": ("model.p.a",),
               "model.p.other": ()}
    digests = {uid: "d0" for uid in parents}
    graph = replace(graph_of(parents), digests=digests)

    def with_digest(uid: str, value: str) -> ProjectGraph:
        return replace(graph, digests={**digests, uid: value}, identity="sha256:other")

    def fp(**kw: object) -> str:
        req = kw.pop("req", request(max_models=1))
        sel = kw.pop("sel", ["model.p.a", "model.p.b"])
        g = kw.pop("graph", graph)
        est = kw.pop("est", Estimates())
        return build_plan(req, sel, g, est, **kw).fingerprint  # type: ignore[arg-type]

    base = fp()
    assert base.startswith("sha256:") and len(base) == 7 + 64
    assert fp(est=Estimates({"model.p.a": 1.0})) == base
    assert fp(sel=["model.p.b", "model.p.a", "model.p.a"]) == base
    for changed in (
        fp(req=request(max_models=1, content_hash="sha256:other")),
        fp(sel=["model.p.a"]),
        fp(graph=with_digest("model.p.b", "d1")),  # a selected model's code or config
        fp(graph=with_digest("source.p.raw", "d1")),  # an ancestor of the selection
        fp(policy_hash="sha256:policies"),
        fp(full_refresh_ids=["model.p.b"]),
    ):
        assert changed != base
    # Scoped to the request: an unrelated model's change (a new manifest identity) leaves it alone.
    assert fp(graph=with_digest("model.p.other", "d1")) == base
    plan = build_plan(request(max_models=1), ["model.p.a", "model.p.b"], graph, Estimates())
    assert plan_fingerprint(request(max_models=1), ["model.p.a", "model.p.b"], graph,
                            batches=plan.batches) == base


# A small hand-made project: two staging chains joined in a mart, a side branch
# through an unselected model, a full-refresh tail and one model without history.
SMALL_PARENTS: dict[str, tuple[str, ...]] = {
    "source.shop.raw.orders": (),
    "source.shop.raw.customers": (),
    "model.shop.stg_orders": ("source.shop.raw.orders",),
    "model.shop.stg_customers": ("source.shop.raw.customers",),
    "model.shop.int_orders_enriched": ("model.shop.stg_customers", "model.shop.stg_orders"),
    "model.shop.fct_orders": ("model.shop.int_orders_enriched",),
    "model.shop.dim_customers": ("model.shop.fct_orders", "model.shop.stg_customers"),
    "model.shop.unselected_bridge": ("model.shop.stg_orders",),
    "model.shop.orders_daily": ("model.shop.unselected_bridge",),
    "model.shop.orders_monthly": ("model.shop.orders_daily",),
    "test.shop.not_null_fct_orders_id": ("model.shop.fct_orders",),
}
SMALL_SECONDS = {
    "model.shop.stg_orders": 120.0,
    "model.shop.stg_customers": 30.0,
    "model.shop.int_orders_enriched": 400.0,
    "model.shop.fct_orders": 900.0,
    "model.shop.dim_customers": 200.0,
    "model.shop.orders_daily": 50.0,
}


def small_plan() -> Plan:
    graph = graph_of(SMALL_PARENTS, identity="sha256:small-graph")
    selected = [m for m in SMALL_PARENTS if m.startswith("model.") and m != "model.shop.unselected_bridge"]
    return build_plan(
        request(max_models=3, max_minutes=12, pause_minutes=2, content_hash="sha256:small-request"),
        selected,
        graph,
        Estimates(SMALL_SECONDS),
        policy_hash="sha256:small-policy",
        full_refresh_ids=["model.shop.orders_daily", "model.shop.orders_monthly"],
    )


def test_golden_small_plan() -> None:
    """The plan JSON of a fixed small project, byte for byte (``RR_UPDATE_GOLDEN=1`` rewrites it)."""
    path = GOLDEN / "plan_small.json"
    text = plan_to_json(small_plan())
    if os.environ.get("RR_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
    assert list(json.loads(text)) == [
        "id",
        "fingerprint",
        "batches",
        "estimated_seconds",
        "pause_seconds",
        "warnings",
        "stale_downstream",
    ]
    assert PLANNER_FORMAT == 2, "a new planner format needs a new golden file"


@pytest.fixture(scope="module")
def gitlab_graph(gitlab_manifest_path: Path) -> ProjectGraph:
    from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json

    return graph_from_manifest_dict(load_manifest_json(gitlab_manifest_path))


def _gitlab_request(**kw: object) -> Request:
    return request(content_hash="sha256:gitlab-fixed", **kw)  # type: ignore[arg-type]


def _assert_deps_respected(plan: Plan, graph: ProjectGraph) -> None:
    pos = {m: i for i, m in enumerate(plan.models)}
    # the closure of the induced dependencies is the whole selected ancestry
    for m, ds in induced_dependencies(pos, graph.parents).items():
        assert all(pos[d] < pos[m] for d in ds), m


@pytest.mark.gitlab
def test_gitlab_all_models_max_models(gitlab_graph: ProjectGraph) -> None:
    """Recorded summary (not a golden file: nothing derived from the manifest is committed)."""
    models = [uid for uid, n in gitlab_graph.nodes.items() if n.resource_type == "model"]
    plan = build_plan(_gitlab_request(max_models=25), models, gitlab_graph, Estimates())
    _assert_deps_respected(plan, gitlab_graph)
    assert len(plan.models) == 2931 and len(plan.batches) == 118 == math.ceil(2931 / 25)
    assert plan.fingerprint == "sha256:1333b01649edb7508c0c618631d0723cfe784647047d690aa8c05922ad0e8dab"
    ends = [(b.models[0], b.models[-1]) for b in (plan.batches[0], plan.batches[1], plan.batches[-1])]
    assert ends == [
        ("model.dbt_artifacts.model_executions", "model.dbt_artifacts.fct_dbt__invocations"),
        ("model.dbt_artifacts.seed_executions", "model.gitlab_snowflake.cost_centers_source"),
        (
            "model.gitlab_snowflake.zuora_revenue_schedule_item_snapshots_source",
            "model.snowflake_spend.snowflake_query_history",
        ),
    ]
    assert plan.warnings == ("2931 models have no run history; assumed 60 s each",)


@pytest.mark.gitlab
def test_gitlab_descendants_with_minutes_and_full_refresh(gitlab_graph: ProjectGraph) -> None:
    from rescue_runner.lineage import descendants

    root = "model.gitlab_snowflake.dim_date"
    selected = {m for m in descendants([root], gitlab_graph.parents) if m in gitlab_graph.nodes} | {root}
    incremental = [m for m in selected if gitlab_graph.nodes[m].materialized == "incremental"]
    req = _gitlab_request(max_models=40, max_minutes=30, pause_minutes=2)
    plan = build_plan(req, selected, gitlab_graph, Estimates(), full_refresh_ids=incremental)
    _assert_deps_respected(plan, gitlab_graph)
    assert (len(selected), len(incremental), len(plan.batches)) == (589, 81, 26)
    assert all(len(b.models) <= 30 for b in plan.batches)  # 30 min of 60 s defaults
    assert all({m in incremental for m in b.models} == {b.full_refresh} for b in plan.batches)
    assert [b.full_refresh for b in plan.batches].count(True) == 6
    assert plan.batches[0].models[0] == root
    assert plan.fingerprint == "sha256:887fe88622f5375e7ae1ab68a6da13fa946e53f3c1b3bef9733d875fe0a6cef8"
    assert (
        plan.estimated_seconds == 589 * 60
        and plan.batches[-1].start_offset_seconds == 589 * 60 - 24 * 60 + 25 * 120
    )
    assert "dbt ignores --full-refresh for 5 model(s)" in plan.warnings[1]


def test_an_approved_cut_is_kept_while_valid_and_replaced_when_not() -> None:
    """Fresher history never re-cuts an approved plan; a cut that no longer fits is replaced."""
    parents = {"model.p.a": (), "model.p.b": ("model.p.a",), "model.p.c": ("model.p.b",)}
    graph = graph_of(parents)
    req = request(max_minutes=2.0)
    sel = list(parents)
    first = build_plan(req, sel, graph, Estimates({"model.p.a": 60.0, "model.p.b": 60.0, "model.p.c": 60.0}))
    assert [len(b.models) for b in first.batches] == [2, 1]
    fresher = Estimates({"model.p.a": 100.0, "model.p.b": 100.0, "model.p.c": 10.0})
    assert [len(b.models) for b in build_plan(req, sel, graph, fresher).batches] == [1, 2]
    kept = build_plan(req, sel, graph, fresher, keep=first.batches)
    assert [b.models for b in kept.batches] == [b.models for b in first.batches]
    assert kept.fingerprint == first.fingerprint
    # A forged cut (a model out of lineage order, or one never selected) is not kept.
    forged = (replace(first.batches[0], models=("model.p.b", "model.p.a")), first.batches[1])
    assert [b.models for b in build_plan(req, sel, graph, fresher, keep=forged).batches] != \
        [b.models for b in forged]
    extra = (first.batches[0], replace(first.batches[1], models=("model.p.c", "model.p.x")))
    assert build_plan(req, sel, graph, fresher, keep=extra).fingerprint != first.fingerprint
