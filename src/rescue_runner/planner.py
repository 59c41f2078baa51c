"""Request + resolved selection + graph + history -> a deterministic, fingerprinted Plan.

How batches are made:
1. Order the selection with ``lineage.order_from_dependencies`` (ancestors first,
   components and subtrees kept together).
2. If only some models need ``--full-refresh``, split into the fewest runs of one
   kind: keep taking every ready model of the current kind, then switch (optimal
   for two kinds once the first kind is fixed). Runs are built forwards and
   backwards, starting with either kind; each run keeps the base order.
3. Cut each run into consecutive chunks: a chunk closes when the next model would
   break ``max_models`` or ``max_minutes``. Greedy cutting of a fixed order gives
   the fewest chunks, so with only ``max_models`` there are exactly
   ceil(n / max_models) batches per run. A model over ``max_minutes`` on its own
   gets its own batch and a warning. Of the candidate run splits, the one with the
   fewest batches wins.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence

from .downstream import stale_downstream
from .estimates import Estimates
from .lineage import ancestors, induced_dependencies, order_from_dependencies
from .model import Plan, PlannedBatch, ProjectGraph, Request

# Bump when the same inputs would give a different plan or fingerprint.
PLANNER_FORMAT = 2
_SLACK = 1e-9  # float sums of estimates must not split a batch that fits exactly


def build_plan(
    request: Request,
    selected: Collection[str],
    graph: ProjectGraph,
    estimates: Estimates,
    *,
    policy_hash: str = "",
    full_refresh_ids: Collection[str] | None = None,
    heavy_ids: Collection[str] = (),
    keep: Sequence[PlannedBatch] | None = None,
    excluded: Collection[str] = (),
) -> Plan:
    """Plan ``selected`` (resolved unique_ids) for ``request`` on ``graph``.

    ``full_refresh_ids`` are the models that need ``--full-refresh``; by default all
    of the selection when ``request.full_refresh`` is set, else none. A batch never
    mixes them with the others. ``heavy_ids`` are the models the policy calls heavy: a batch
    holding one is marked ``heavy``. Same inputs give the same Plan, byte for byte.

    ``keep`` is a cut approved earlier (the batches of a ``request_validated`` event): while
    it is still a valid cut of this selection (the same models, one kind per batch, lineage
    order, ``max_models``), it is kept, so fresher run history never re-cuts an approved plan.
    ``excluded`` are the models the request's ``exclude`` removed: the plan's stale
    downstream lists them apart (see downstream.py).
    """

    models = sorted(set(selected))
    if full_refresh_ids is None:
        fr = set(models) if request.full_refresh else set()
    else:
        fr = set(full_refresh_ids)
        strays = sorted(fr.difference(models))
        if strays:
            raise ValueError(f"full_refresh_ids outside the selection: {', '.join(strays[:5])}")
    max_models, max_seconds, pause = _limits(request)
    heavy = frozenset(heavy_ids)

    deps = induced_dependencies(models, graph.parents)
    order = order_from_dependencies(deps)
    seconds: dict[str, float] = {}
    unknown: set[str] = set()
    for m in models:
        seconds[m], is_unknown = estimates.for_model(m)
        if is_unknown:
            unknown.add(m)

    warnings: list[str] = []
    if not models:
        warnings.append("the selection is empty: nothing to run")
    if unknown:
        n = len(unknown)
        warnings.append(
            f"{n} model{'s have' if n != 1 else ' has'} no run history; "
            f"assumed {estimates.default_seconds:g} s{' each' if n != 1 else ''}"
        )

    batches: list[PlannedBatch] = []
    offset = 0.0

    def cut(run: Sequence[str]) -> list[list[str]]:
        return _chunks(run, seconds, max_models, max_seconds)

    if keep is not None and valid_cut(keep, models, deps, fr, max_models):
        chunks = [(b.full_refresh, list(b.models)) for b in keep]
    else:
        chunks = _batches(order, deps, fr, cut)
    for is_fr, chunk in chunks:
        est = round(math.fsum(seconds[m] for m in chunk), 3)
        index = len(batches) + 1
        if max_seconds is not None and len(chunk) == 1 and seconds[chunk[0]] > max_seconds + _SLACK:
            warnings.append(
                f"{chunk[0]} is estimated at {seconds[chunk[0]] / 60:.1f} min, over max_minutes "
                f"{max_seconds / 60:g}: it runs alone in batch {index}"
            )
        batches.append(
            PlannedBatch(
                index=index,
                models=tuple(chunk),
                full_refresh=is_fr,
                estimated_seconds=est,
                unknown_estimates=tuple(m for m in chunk if m in unknown),
                start_offset_seconds=round(offset, 3),
                heavy=not heavy.isdisjoint(chunk),
            )
        )
        offset += est + pause

    ignored = sorted(m for m in fr if (info := graph.nodes.get(m)) is not None and info.full_refresh is False)
    if ignored:
        warnings.append(
            f"dbt ignores --full-refresh for {len(ignored)} model(s) configured full_refresh: false: "
            + ", ".join(ignored[:5])
            + (" ..." if len(ignored) > 5 else "")
        )

    return Plan(
        request_id=request.id,
        fingerprint=plan_fingerprint(request, models, graph, policy_hash=policy_hash, full_refresh_ids=fr,
                                     batches=batches),
        batches=tuple(batches),
        estimated_seconds=round(math.fsum(b.estimated_seconds for b in batches), 3),
        pause_seconds=pause,
        warnings=tuple(warnings),
        downstream=stale_downstream(models, graph, excluded),
    )


def plan_fingerprint(
    request: Request,
    selected: Collection[str],
    graph: ProjectGraph,
    *,
    policy_hash: str = "",
    full_refresh_ids: Collection[str] = (),
    batches: Sequence[PlannedBatch] = (),
) -> str:
    """``sha256:`` of what was reviewed, scoped to the request.

    Covered: the request bytes, the resolved models, the full-refresh set, the batches (models,
    full refresh), the policy, and the digest (code checksum and config) of every
    selected node and of every node it depends on. Not covered: the rest of the manifest (an
    unrelated merge leaves the fingerprint alone) and the estimates.
    """
    models = sorted(set(selected))
    scope = set(models) | ancestors(models, graph.parents)
    payload = {
        "format": PLANNER_FORMAT,
        "request": request.content_hash,
        "models": models,
        "full_refresh": sorted(set(full_refresh_ids)),
        "batches": [[list(b.models), b.full_refresh] for b in batches],
        "nodes": {uid: graph.digests.get(uid, "") for uid in sorted(scope)},
        "policy": policy_hash,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def plan_to_json(plan: Plan) -> str:
    """The plan as JSON in the documented key order (``Plan.to_dict``), newline-terminated."""
    return json.dumps(plan.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def valid_cut(batches: Sequence[PlannedBatch], models: Collection[str], deps: Mapping[str, Collection[str]],
              fr: Collection[str], max_models: int | None) -> bool:
    """Whether ``batches`` run exactly ``models``, each model once, indexes 1..n, one full-refresh
    kind per batch matching ``fr``, every model after its dependencies, within ``max_models``."""
    seen: set[str] = set()
    for i, b in enumerate(batches, start=1):
        if b.index != i or not b.models or (max_models is not None and len(b.models) > max_models):
            return False
        for m in b.models:
            if m in seen or m not in deps or (m in fr) != b.full_refresh or not set(deps[m]) <= seen:
                return False
            seen.add(m)
    return seen == set(models)


def _limits(request: Request) -> tuple[int | None, float | None, float]:
    spec = request.batches
    if spec is None:
        return None, None, 0.0
    if spec.max_models is not None and spec.max_models < 1:
        raise ValueError(f"batches.max_models must be at least 1, not {spec.max_models}")
    if spec.max_minutes is not None and not spec.max_minutes > 0:
        raise ValueError(f"batches.max_minutes must be positive, not {spec.max_minutes}")
    if not spec.pause_minutes >= 0:
        raise ValueError(f"batches.pause_minutes must be >= 0, not {spec.pause_minutes}")
    max_seconds = None if spec.max_minutes is None else float(spec.max_minutes) * 60
    return spec.max_models, max_seconds, float(spec.pause_minutes) * 60


def _chunks(
    run: Sequence[str], seconds: Mapping[str, float], max_models: int | None, max_seconds: float | None
) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    total = 0.0
    for m in run:
        full = max_models is not None and len(cur) >= max_models
        too_long = max_seconds is not None and total + seconds[m] > max_seconds + _SLACK
        if cur and (full or too_long):
            out.append(cur)
            cur, total = [], 0.0
        cur.append(m)
        total += seconds[m]
    if cur:
        out.append(cur)
    return out


def _batches(
    order: Sequence[str],
    deps: Mapping[str, Collection[str]],
    fr: Collection[str],
    cut: Callable[[Sequence[str]], list[list[str]]],
) -> list[tuple[bool, list[str]]]:
    """Cut ``order`` into batches of one kind (full refresh or not) each.

    With one kind, the order is cut as it is. With both, the candidates are the
    fewest-runs orders built forwards (as early as possible) and backwards (as late
    as possible), each starting with either kind; the one giving the fewest batches
    wins (then the fewest runs, then the first tried).
    """
    if not order:
        return []
    kinds = {m: m in fr for m in order}
    if len(set(kinds.values())) == 1:
        return [(kinds[order[0]], chunk) for chunk in cut(order)]
    kids: dict[str, list[str]] = {m: [] for m in order}
    for m in order:
        for d in deps[m]:
            kids[d].append(m)
    best: tuple[int, int] | None = None
    chosen: list[tuple[bool, list[str]]] = []
    for backward in (False, True):
        before, after = (kids, deps) if backward else (deps, kids)
        first = kinds[order[-1] if backward else order[0]]
        for start in (first, not first):
            runs = _greedy_runs(order, before, after, kinds, start)
            if backward:
                runs.reverse()
            batches = [(kind, chunk) for kind, run in runs for chunk in cut(run)]
            score = (len(batches), len(runs))
            if best is None or score < best:
                best, chosen = score, batches
    return chosen


def _greedy_runs(
    order: Sequence[str],
    before: Mapping[str, Collection[str]],
    after: Mapping[str, Collection[str]],
    kinds: Mapping[str, bool],
    start: bool,
) -> list[tuple[bool, list[str]]]:
    """Fewest runs of one kind: keep taking ready nodes of the current kind, then switch.

    ``before[m]`` must all be taken before ``m``; ``after`` is its inverse. With
    ``before`` = dependencies this walks forwards; with the children it walks
    backwards (the caller reverses the runs). Taking every ready node of the current
    kind never hurts later (more taken only readies more), so for two kinds this is
    optimal once the starting kind is fixed. Each run keeps the base order.
    """
    pos = {m: i for i, m in enumerate(order)}
    waiting = {m: len(before[m]) for m in order}
    ready: dict[bool, list[str]] = {True: [], False: []}
    for m in order:
        if waiting[m] == 0:
            ready[kinds[m]].append(m)
    runs: list[tuple[bool, list[str]]] = []
    kind = start
    while ready[True] or ready[False]:
        if not ready[kind]:
            kind = not kind
        # A run is the closure "everything of this kind that can be taken now",
        # so the order of taking inside it does not matter: sort it back afterwards.
        run: list[str] = []
        while ready[kind]:
            m = ready[kind].pop()
            run.append(m)
            for c in after[m]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    ready[kinds[c]].append(c)
        runs.append((kind, sorted(run, key=pos.__getitem__)))
        kind = not kind
    return runs
