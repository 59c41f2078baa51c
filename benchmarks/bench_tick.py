"""A cron tick with work on the bundled example, beside plain `dbt ls` of the same selection.

A repository like the tests' (bare origin, a runner clone, the example project, a merged
request selecting ``int_orders+``) in embedded defaults. Every figure is a fresh process, runs
interleaved round by round, medians:

* baseline: ``dbt ls --select int_orders+ --resource-type model`` in the runner's project;
* ``rescue apply --dry-run`` with the parse cache warm: the tick's whole decision (fetch,
  approvals from the protected branch, strict decoding, dbt resolution, plan, policy,
  queue decision) up to the point where it would submit the batch;
* the same with the cache off (what every tick paid before: a dbt parse).

    python benchmarks/bench_tick.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from _timing import fmt, timed_run  # noqa: E402

RID = "2026-12-07-bench-tick"
REQUEST = {"version": 1, "reason": "benchmark: one cron tick with work", "requested_by": "bench",
           "select": "int_orders+"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from support.example import build_example
    from support.prefect_server import base_env
    from support.rescue_repo import config, make_repo, rescue_executable

    with tempfile.TemporaryDirectory(prefix="rescue-bench-tick-") as tmp:
        root = Path(tmp)
        ex = build_example(root / "ex")
        env = base_env({"LAKEHOUSE_DB": str(ex.db_path), "DBT_QUIET": "true",
                        "PREFECT_HOME": str(root / "prefect-home"), "RESCUE_CACHE_DIR": str(root / "cache")})
        env.pop("PREFECT_API_URL", None)
        repo = make_repo(root / "git", ex.project_dir, config(storage=root / "runs"), env=env)
        repo.merge_request(RID, REQUEST)
        project = repo.runner / "lakehouse"
        tick = [*rescue_executable(), "apply", "--dry-run"]
        ls = [str(Path(sys.executable).parent / "dbt"), "ls", "--select", "int_orders+", "--resource-type",
              "model", "--project-dir", str(project), "--profiles-dir", str(project), "--target", "dev", "-q"]
        _, out = timed_run(tick, env, repo.runner)  # warms the cache (and shows what the tick decides)
        if RID not in out:
            raise SystemExit(f"the tick did not consider the request:\n{out}")
        timed_run(ls, env, repo.runner)  # dbt's partial parsing warm too
        plain, warm, cold = [], [], []
        for _ in range(args.repeat):
            plain.append(timed_run(ls, env, repo.runner)[0])
            warm.append(timed_run(tick, env, repo.runner)[0])
            cold.append(timed_run(tick, {**env, "RESCUE_CACHE": "off"}, repo.runner)[0])
        decision = [ln for ln in out.splitlines() if RID in ln][:3]
    p, w, c = (statistics.median(v) for v in (plain, warm, cold))
    print(f"fresh processes, {args.repeat} interleaved rounds, medians; the tick decided:")
    for line in decision:
        print(f"  {line.strip()}")
    print(f"baseline: plain `dbt ls --select int_orders+` (partial parse warm): {p:5.2f} s {fmt(plain)}")
    print(f"cron tick with work, parse cache warm:  {w:5.2f} s {fmt(warm)} -> {w / p:.2f}x (target <= 1.5)")
    print(f"cron tick with work, cache off (a parse): {c:5.2f} s {fmt(cold)} -> {c / p:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
