"""One rescue batch: rescue's embedded path against plain `dbt build`, and dbt's graph overhead at scale.

Part 1, the bundled example (examples/lakehouse, built into a temp dir): wall time of one
batch (int_orders + mart_revenue) through ``execution.submit_batch`` in embedded mode in a
fresh process (what `rescue apply` without a server costs: no Prefect, the run goes to the
local run record), against a fresh ``dbt build --select`` of the same models, interleaved
rounds, medians. Prints both, the ratio, and where the time goes.

Part 2, a synthetic project of ``--models`` trivial DuckDB view models (layers with
fan-out and fan-in, one not_null test each): the per-invocation overhead of dbt's graph
work for a 5-model batch, plain and with the flow's mitigations (one preloaded manifest,
``--use-fast-test-edges``, docs generate limited to the batch without recompiling).

    python benchmarks/bench_batch.py [--models 2000] [--repeat 3] [--skip-example] [--skip-synthetic]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from _timing import fmt, timed_run  # noqa: E402

TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
BATCH = ("model.lakehouse.int_orders", "model.lakehouse.mart_revenue")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "PREFECT_"))}
    return {**env, **TELEMETRY_OFF, **extra}


def dbt_cmd() -> list[str]:
    script = Path(sys.executable).parent / "dbt"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dbt.cli.main"]


def commit_all(root: Path) -> None:
    """Batches build a commit: make ``root`` a repository with everything committed."""
    (root / ".gitignore").write_text("*.duckdb\n*.duckdb.wal\ntarget/\nlogs/\n.rescue/\n")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=bench", "-c", "user.email=b@b",
                                                 "commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, check=True)


# ---- part 1: the example project ------------------------------------------------------------

_EMBEDDED = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from pathlib import Path
    from rescue_runner import execution
    from rescue_runner.config import config_from_data
    from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json
    from rescue_runner.model import PlannedBatch
    a = json.loads(sys.argv[1])
    config = config_from_data(Path(a["root"]), a["data"])
    batch = PlannedBatch(1, tuple(a["models"]), False, 1.0)
    out = {}
    manifest = None
    if a["mode"] == "apply":
        # What `rescue apply` does before its first batch: parse the approved commit for planning.
        from rescue_runner.adapters.dbt import DbtProject
        from rescue_runner.adapters.git_checkout import tree_at
        # Batches build the approved commit's tree; a manifest parsed there is reused by the flow.
        _, tree = tree_at(config.root, "HEAD", config.root / ".rescue" / "checkouts")
        project = DbtProject.from_project(tree / "lakehouse", tree / "lakehouse", config.dbt.target)
        manifest = project.manifest
        graph = project.graph()
    else:
        graph = graph_from_manifest_dict(load_manifest_json(a["manifest"]))
    t1 = time.perf_counter()
    out["setup"] = t1 - t0
    for attempt in (1, 2) if a["mode"] == "apply" else (1,):
        t1 = time.perf_counter()
        run = execution.submit_batch(config, a["request"], "sha256:bench", batch, attempt, graph,
                                     manifest=manifest)
        summary = json.loads((Path(run.artifacts_dir) / "summary.json").read_text())
        out[f"batch{attempt}"] = {"state": run.state, "wall": time.perf_counter() - t1,
                                  "steps": summary["seconds"]}
    out["prefect_imported"] = any(m.split(".")[0] == "prefect" for m in sys.modules)
    print("BENCH " + json.dumps(out))
""")


def bench_example(repeat: int) -> None:
    from support.example import build_example

    print("== Part 1: one batch of the example project (int_orders + mart_revenue) ==")
    with tempfile.TemporaryDirectory(prefix="rescue-bench-") as tmp:
        t0 = time.perf_counter()
        ex = build_example(Path(tmp) / "ex")
        print(f"example built (seed + build) in {time.perf_counter() - t0:.1f} s")
        commit_all(ex.project_dir.parent)
        env = clean_env({"LAKEHOUSE_DB": str(ex.db_path)})
        names = [m.rsplit(".", 1)[1] for m in BATCH]
        plain_cmd = [*dbt_cmd(), "build", "--select", *names, "--project-dir", str(ex.project_dir),
                     "--profiles-dir", str(ex.profiles_dir), "--target", "dev"]
        base = {
            "root": str(ex.project_dir.parent), "manifest": str(ex.manifest_path), "models": list(BATCH),
            "request": "bench",
            "data": {"dbt": {"project_dir": str(ex.project_dir), "profiles_dir": str(ex.profiles_dir),
                             "target": "dev"},
                     "prefect": {"run_results_storage_path": str(Path(tmp) / "runs")}}}

        def embedded(mode: str) -> tuple[float, dict[str, Any]]:
            cmd = [sys.executable, "-c", _EMBEDDED, json.dumps({**base, "mode": mode})]
            wall, out = timed_run(cmd, env, ex.project_dir.parent)
            info = json.loads(next(ln for ln in out.splitlines() if ln.startswith("BENCH "))[6:])
            for key, b in info.items():
                if key.startswith("batch") and b["state"] != "COMPLETED":
                    raise SystemExit(f"embedded {key} ended {b['state']}")
            if info["prefect_imported"]:
                raise SystemExit("an embedded batch imported prefect")
            return wall, info

        first, _ = embedded("cold")  # fills the parse cache of the commit (one-off, as on a new runner)
        timed_run(plain_cmd, env, ex.project_dir.parent)  # partial parsing warm for plain dbt too
        plain, cold, apply = [], [], []
        for _ in range(repeat):
            plain.append(timed_run(plain_cmd, env, ex.project_dir.parent)[0])
            cold.append(embedded("cold"))
            apply.append(embedded("apply"))
        p = statistics.median(plain)
        c = statistics.median(w for w, _ in cold)
        med = statistics.median
        steps = {k: med(i["batch1"]["steps"][k] for _, i in cold) for k in ("parse", "build", "docs")}
        c_setup, c_batch = med(i["setup"] for _, i in cold), med(i["batch1"]["wall"] for _, i in cold)
        a_setup = med(i["setup"] for _, i in apply)
        a1, a2 = med(i["batch1"]["wall"] for _, i in apply), med(i["batch2"]["wall"] for _, i in apply)
        a_steps = {k: med(i["batch1"]["steps"][k] for _, i in apply) for k in ("parse", "build", "docs")}
        print(f"plain `dbt build --select {' '.join(names)}`, fresh process: median {p:.2f} s {fmt(plain)}")
        print(f"rescue embedded, fresh process, one batch:             median {c:.2f} s "
              f"{fmt([w for w, _ in cold])}  -> {c / p:.2f}x plain (target <= 1.5x)")
        print(f"  first run on this machine (fills the parse cache of the commit): {first:.2f} s")
        print(f"  imports + config + graph {c_setup:.2f} s; submit_batch {c_batch:.2f} s, of which dbt "
              f"parse {steps['parse']:.2f} + build {steps['build']:.2f} + docs {steps['docs']:.2f} s and "
              f"the rest (dbt import, commit tree, local run record) "
              f"{c_batch - sum(steps.values()):.2f} s; exit {c - c_setup - c_batch:.2f} s")
        print("as `rescue apply` runs it (planning parses the approved commit; the batch reuses that "
              "manifest):")
        print(f"  planning parse (validation needs it anyway): {a_setup:.2f} s")
        print(f"  batch 1: {a1:.2f} s -> {a1 / p:.2f}x plain  (dbt build {a_steps['build']:.2f} + docs "
              f"{a_steps['docs']:.2f} s; rest: commit tree, local run record)")
        print(f"  batch 2 in the same process: {a2:.2f} s -> {a2 / p:.2f}x plain")


# ---- part 2: a synthetic project ----------------------------------------------------------------

def make_synthetic(root: Path, n_models: int, layers: int = 20, seed: int = 20261123) -> list[str]:
    """A dbt project of ``n_models`` view models in ``layers`` layers; returns a 5-model batch.

    Each model in layer k > 0 refs one or two models of layer k-1 (fan-in); every model has a
    not_null test. The batch is model 0 of layers 0..4, a chain whose parents are all in the
    batch, so it builds on an empty warehouse.
    """
    rnd = random.Random(seed)
    width = max(5, n_models // layers)
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(textwrap.dedent("""
        name: synth
        version: "1.0.0"
        config-version: 2
        profile: synth
        models:
          synth:
            +materialized: view
    """))
    (root / "profiles.yml").write_text(textwrap.dedent(f"""
        synth:
          target: dev
          outputs:
            dev:
              type: duckdb
              path: "{root / 'synth.duckdb'}"
              threads: 2
    """))
    names: list[list[str]] = []
    count = 0
    for layer in range(layers):
        row = []
        folder = root / "models" / f"layer_{layer:02d}"
        folder.mkdir()
        schema = ["version: 2", "models:"]
        for i in range(width):
            if count >= n_models:
                break
            name = f"m_{layer:02d}_{i:04d}"
            if layer == 0:
                sql = f"select {i} as id"
            elif i == 0:
                sql = f"select id from {{{{ ref('{names[layer - 1][0]}') }}}}"
            else:
                parents = rnd.sample(names[layer - 1][1:], k=min(2, len(names[layer - 1]) - 1))
                sql = " union all ".join(f"select id from {{{{ ref('{p}') }}}}" for p in parents)
            (folder / f"{name}.sql").write_text(sql + "\n")
            schema += [f"  - name: {name}", "    columns:", "      - name: id",
                       "        data_tests: [not_null]"]
            row.append(name)
            count += 1
        (folder / "_schema.yml").write_text("\n".join(schema) + "\n")
        names.append(row)
    return [names[k][0] for k in range(5)]


def bench_synthetic(n_models: int, plain: bool = True) -> None:
    print(f"\n== Part 2: a 5-model batch in a synthetic project of {n_models} models ==")
    with tempfile.TemporaryDirectory(prefix="rescue-synth-") as tmp:
        root = Path(tmp) / "synth"
        batch = make_synthetic(root, n_models)
        commit_all(root)
        env = clean_env({})
        common = ["--project-dir", str(root), "--profiles-dir", str(root)]
        wall, _ = timed_run([*dbt_cmd(), "parse", *common], env, root)
        print(f"dbt parse, cold, full ({n_models} models + {n_models} tests): {wall:.1f} s")
        # A warehouse is not empty: with the first layer's views in it, a catalog that is not
        # limited to the batch has hundreds of relations to list.
        wall, _ = timed_run([*dbt_cmd(), "run", "--select", "path:models/layer_00", *common], env, root)
        print(f"warehouse: the first layer's views built ({wall:.1f} s)")
        flow_batches(root, Path(tmp), batch[0], env)
        if not plain:
            return
        wall, _ = timed_run([*dbt_cmd(), "build", "--select", *batch, *common], env, root)
        print(f"plain `dbt build --select <5 models>` (fresh process, partial parse): {wall:.1f} s")
        wall, _ = timed_run([*dbt_cmd(), "build", "--select", *batch, *common, "--use-fast-test-edges"],
                            env, root)
        print(f"plain `dbt build --select <5 models> --use-fast-test-edges`:        {wall:.1f} s")
        _in_process(root, batch)


_FLOW = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from pathlib import Path
    from rescue_runner import execution
    from rescue_runner.config import config_from_data
    from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json
    from rescue_runner.model import PlannedBatch
    a = json.loads(sys.argv[1])
    config = config_from_data(Path(a["root"]), a["data"])
    graph = graph_from_manifest_dict(load_manifest_json(a["manifest"]))
    t1 = time.perf_counter()
    run = execution.submit_batch(config, "bench", "sha256:bench", PlannedBatch(1, (a["model"],), False, 1.0),
                                 a["attempt"], graph)
    summary = json.loads((Path(run.artifacts_dir) / "summary.json").read_text())
    print("BENCH " + json.dumps({"state": run.state, "wall": time.perf_counter() - t1, "setup": t1 - t0,
                                 "steps": summary["seconds"], "manifest": summary.get("manifest")}))
""")


def flow_batches(root: Path, tmp: Path, model: str, env: dict[str, str], batches: int = 4) -> None:
    """One-model batches through the flow, each in a fresh process (as a process worker runs them):
    the first parses the commit, the next ones take that parse from the cache."""
    uid = f"model.synth.{model}"
    args = {"root": str(root), "manifest": str(root / "target" / "manifest.json"), "model": uid,
            "data": {"dbt": {"project_dir": str(root), "profiles_dir": str(root)},
                     "prefect": {"run_results_storage_path": str(tmp / "runs")}}}
    env = {**env, "RESCUE_CACHE_DIR": str(tmp / "cache")}
    print(f"one-model batch ({model}) through the flow, fresh process per batch (embedded):")
    # After the first batch, later ones interleaved with the same batch on dbt's own path
    # (RESCUE_DBT_LEAN=off: no dbt_lean hooks, no --cache-selected-only) as the in-run baseline.
    lean = [True] + [True, False] * max(1, batches - 1)
    works: dict[bool, list[float]] = {True: [], False: []}
    for k, on in enumerate(lean, start=1):
        cmd = [sys.executable, "-c", _FLOW, json.dumps({**args, "attempt": k})]
        wall, out = timed_run(cmd, env if on else {**env, "RESCUE_DBT_LEAN": "off"}, root)
        info = json.loads(next(ln for ln in out.splitlines() if ln.startswith("BENCH "))[6:])
        if info["state"] != "COMPLETED":
            raise SystemExit(f"batch {k} ended {info['state']}")
        st = info["steps"]
        work = sum(st.get(x, 0.0) for x in ("parse", "build", "docs"))
        works[on].append(work)
        label = ("first batch of the commit" if k == 1 else f"batch {k}, commit parsed before"
                 + ("" if on else ", dbt's own path"))
        print(f"  {label:<32} flow work {work:5.2f} s (parse {st.get('parse', 0):.2f} [{info['manifest']}]"
              f" + build {st.get('build', 0):.2f} + docs {st.get('docs', 0):.2f}); whole process "
              f"{wall:.1f} s, of which commit tree and run bookkeeping "
              f"{info['wall'] - work:.1f} s" + ("  (target: flow work < 5 s)" if k > 1 and on else ""))
    first, later, plain = works[True][0], statistics.median(works[True][1:]), statistics.median(works[False])
    print(f"  flow work of a later batch: median {later:.2f} s (target < 5 s) beside the first batch's "
          f"{first:.2f} s ({first / later:.1f}x less) and dbt's own path's {plain:.2f} s "
          f"-> {later / plain:.2f}x")


def _in_process(root: Path, batch: list[str]) -> None:
    """The flow's own sequence, step by step, in this process (as on a worker)."""
    os.environ.update(TELEMETRY_OFF)
    from dbt.cli.main import dbtRunner

    from rescue_runner.dbt_args import dbt_build_args, dbt_docs_args, dbt_parse_args
    from rescue_runner.flows.batch import fast_cycle_check

    project = dict(project_dir=str(root), profiles_dir=str(root))
    work = root / "bench-target"

    def step(label: str, fn: Callable[[], Any]) -> tuple[Any, float, float]:
        t0 = time.perf_counter()
        res = fn()
        wall = time.perf_counter() - t0
        if not res.success:
            raise SystemExit(f"{label} failed: {res.exception}")
        sql = getattr(res.result, "elapsed_time", None) or 0.0
        extra = f"  (run phase {sql:5.2f} s, graph work and setup {wall - sql:5.2f} s)" if sql else ""
        print(f"  {label:<62} {wall:6.2f} s{extra}")
        return res, wall, wall - sql

    print("in process (as on a worker), 5-model batch:")
    res, t_parse, _ = step("parse once (partial parse warm)", lambda: dbtRunner().invoke(
        [*dbt_parse_args(**project), "--quiet"]))
    manifest = res.result

    def build(**kw: Any) -> list[str]:
        return [*dbt_build_args(select=batch, target_path=str(work), **project, **kw), "--quiet"]

    _, t_b0, o_b0 = step("build: preloaded manifest only", lambda: dbtRunner(manifest=manifest).invoke(
        build(fast_test_edges=False)))
    _, _, o_b1 = step("build: + --use-fast-test-edges", lambda: dbtRunner(manifest=manifest).invoke(
        build()))
    with fast_cycle_check():
        _, t_b2, o_b2 = step("build: + linear cycle check + --no-write-json (the flow)",
                             lambda: dbtRunner(manifest=manifest).invoke(build(write_json=False)))
        docs = [*dbt_docs_args(select=batch, target_path=str(work), **project), "--quiet"]
        _, t_docs, _ = step("docs generate --select <batch> --no-compile (the flow)",
                            lambda: dbtRunner(manifest=manifest).invoke(docs))
    full_docs = ["docs", "generate", "--project-dir", str(root), "--profiles-dir", str(root),
                 "--target-path", str(work), "--quiet"]
    _, t_full_docs, _ = step("docs generate, whole project (compiles every node)",
                             lambda: dbtRunner(manifest=manifest).invoke(full_docs))
    _, t_reparse, _ = step("a second parse (a docs step that does not reuse the manifest)",
                           lambda: dbtRunner().invoke([*dbt_parse_args(**project), "--quiet"]))
    print(f"dbt graph overhead of one build invocation: {o_b0:.1f} s plain -> {o_b1:.1f} s with fast "
          f"test edges -> {o_b2:.1f} s with the flow's mitigations")
    naive = t_parse + t_b0 + t_reparse + t_full_docs
    ours = t_parse + t_b2 + t_docs
    print(f"per-batch dbt time, naive (build, then `dbt docs generate` as a separate command): {naive:.1f} s")
    print(f"per-batch dbt time, the flow (one parse, mitigated build, batch-only docs):       {ours:.1f} s "
          f"({naive / ours:.1f}x less)")


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-example", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-plain", action="store_true",
                    help="synthetic part: only the flow's batches, not plain dbt (minutes at 5,000 models)")
    args = ap.parse_args()
    if not args.skip_example:
        bench_example(args.repeat)
    if not args.skip_synthetic:
        bench_synthetic(args.models, plain=not args.skip_plain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
