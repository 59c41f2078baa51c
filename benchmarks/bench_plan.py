"""Plan 2,000+ models of the real GitLab graph against the 1 s target.

Prints: manifest load, graph conversion, plan time (median of 5) for max_models=25,
for max_minutes=30 with made-up history, and for a full-refresh split of the
incremental models; batch counts; peak traced memory of one plan and the process's
peak RSS. Skips (exit 0) when ../shared/data/manifests is absent.

    python benchmarks/bench_plan.py [--models 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO.parent / "shared" / "data" / "manifests" / "gitlab-analytics.manifest.json.gz"
TARGET_SECONDS = 1.0


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--models", type=int, default=2000, help="size of the selection (first N in lineage order)"
    )
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help="manifest.json(.gz) to plan on")
    args = ap.parse_args()
    if not args.manifest.is_file():
        print(f"skip: {args.manifest.name} not found (expected in ../shared/data/manifests beside the repo)")
        return 0

    from rescue_runner.estimates import Estimates
    from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json
    from rescue_runner.lineage import selected_order
    from rescue_runner.model import BatchSpec, Request
    from rescue_runner.planner import build_plan

    t = time.perf_counter()
    manifest = load_manifest_json(args.manifest)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    graph = graph_from_manifest_dict(manifest)
    convert_s = time.perf_counter() - t
    del manifest

    models = [uid for uid, n in graph.nodes.items() if n.resource_type == "model"]
    # The first N models in lineage order: a realistic "upstream broke, rerun a lot" selection
    # with deep chains, shared parents and paths through unselected snapshots and seeds.
    selected = selected_order(models, graph.parents)[: args.models]
    incremental = [m for m in selected if graph.nodes[m].materialized == "incremental"]
    rng = random.Random(20261123)
    history = Estimates({m: round(rng.lognormvariate(3.5, 1.2), 1) for m in selected if rng.random() < 0.8})

    def request(**batches: float) -> Request:
        return Request(
            id="bench",
            path="bench.yaml",
            version=1,
            reason="benchmark",
            requested_by="bench",
            select=("*",),
            batches=BatchSpec(**batches),  # type: ignore[arg-type]
            content_hash="sha256:bench",
        )

    cases: list[tuple[str, Callable[[], object]]] = [
        ("max_models=25", lambda: build_plan(request(max_models=25), selected, graph, history)),
        ("max_minutes=30", lambda: build_plan(request(max_minutes=30), selected, graph, history)),
        (
            "max_models=25 + full refresh of incremental",
            lambda: build_plan(
                request(max_models=25), selected, graph, history, full_refresh_ids=incremental
            ),
        ),
    ]
    print(f"manifest: {len(graph.parents):,} nodes with parents, {len(models):,} models")
    print(f"manifest load:            {load_s:7.3f} s")
    print(f"graph conversion:         {convert_s:7.3f} s")
    print(f"selection: {len(selected):,} models ({len(incremental)} incremental), ", end="")
    print(f"{len(history.seconds):,} with made-up history")
    worst = 0.0
    for name, fn in cases:
        median, plan = timed(fn, args.repeat)
        worst = max(worst, median)
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        batches = len(plan.batches)  # type: ignore[attr-defined]
        print(
            f"plan [{name}]: {median:.4f} s median of {args.repeat}, {batches} batches, "
            f"peak traced {peak / 2**20:.1f} MiB"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS: {rss:.0f} MiB (includes the parsed manifest)")
    print(f"slowest plan / 1 s target: {worst / TARGET_SECONDS:.3f}")
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
