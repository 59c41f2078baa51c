"""Validate 100 rescue requests against the real GitLab manifest, beside one plain `dbt ls`.

Every figure is a fresh process, runs interleaved round by round, medians:

* baseline: one `dbt ls` on that manifest (import dbt, load the manifest, `dbt ls` on it);
* `rescue validate --manifest M` of the 100 requests, manifest cache off (first run);
* the manifest cache warm but no selection remembered (new requests on a known manifest);
* the cache warm (the same requests validated again on the same manifest file, as CI does).

Prints each as a ratio against the baseline, and whether both rescue runs select the same
sets, and (``--check N``) whether N of them equal `dbt ls`. Skips (exit 0) when
../shared/data/manifests is absent.

    python benchmarks/bench_validate.py [--requests 100] [--repeat 3] [--check 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO.parent / "shared" / "data" / "manifests" / "gitlab-analytics.manifest.json.gz"
sys.path.insert(0, str(REPO / "tests"))

from _timing import fmt, timed_run  # noqa: E402

FINDINGS_OK = (0, 1)  # `rescue validate` exits 1 when some request has findings (e.g. selects nothing)

Case = tuple[list[str], list[str]]
ENV = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}

_DBT_LS = """
import json, sys
from pathlib import Path
from dbt.cli.main import dbtRunner
from rescue_runner.adapters.dbt import load_manifest
a = json.loads(sys.argv[1])
m = load_manifest(Path(a["manifest"]))
res = dbtRunner(manifest=m).invoke(["ls", "--select", *a["select"], "--resource-type", "model",
    "--output", "json", "--output-keys", "unique_id", "--quiet", "--project-dir", a["stub"],
    "--profiles-dir", a["stub"]])
assert res.success, res.exception
print("BENCH", len(res.result))
"""


def make_requests(folder: Path, names: list[str], tags: list[str], n: int) -> list[Case]:
    """n request files with realistic, varied selections (seeded: the same files every run)."""
    rnd = random.Random(20261123)
    shapes = ["{m}", "{m}+", "+{m}", "1+{m}+1", "{m}+2", "@{m}", "tag:{t},{m}+", "{m} {m2}+"]
    out = []
    for i in range(n):
        shape = rnd.choice(shapes)
        sel = shape.format(m=rnd.choice(names), m2=rnd.choice(names), t=rnd.choice(tags)).split()
        exc = [f"tag:{rnd.choice(tags)}"] if i % 5 == 0 else []
        out.append((sel, exc))
        lines = ["version: 1", f'reason: "benchmark request number {i} for the validator"',
                 "requested_by: bench", "select:"] + [f'  - "{s}"' for s in sel]
        if exc:
            lines += ["exclude:"] + [f'  - "{e}"' for e in exc]
        (folder / f"bench-{i:03d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def selections(out: str) -> dict[str, list[str]]:
    data = json.loads(out)
    return {r["id"]: sorted(r.get("models") or []) for r in data["requests"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", type=int, default=10, help="how many selections to compare with dbt ls")
    args = ap.parse_args()
    if not MANIFEST.is_file():
        print(f"skip: {MANIFEST.name} not found beside the repository (../shared/data/manifests)")
        return 0
    import gzip

    with gzip.open(MANIFEST, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    names = sorted(n["name"] for n in data["nodes"].values() if n["resource_type"] == "model")
    tags = ["product", "mnpi_exception", "people", "zuora", "gainsight", "safe"]
    del data
    from support.dbt_ls import make_stub_project

    with tempfile.TemporaryDirectory(prefix="rescue-bench-") as tmp:
        root = Path(tmp)
        stub = make_stub_project(root / "stub", "gitlab_snowflake")
        reqdir = root / "rescues"
        reqdir.mkdir()
        cases = make_requests(reqdir, names, tags, args.requests)
        (root / "rescue.yaml").write_text(f"dbt:\n  project_dir: {stub}\n  profiles_dir: {stub}\n"
                                          f"  manifest: {MANIFEST}\n", encoding="utf-8")
        base = {**os.environ, **ENV, "RESCUE_CACHE_DIR": str(root / "cache")}
        rescue = [sys.executable, "-m", "rescue_runner.cli", "validate", "--format", "json", str(reqdir)]
        ls = [sys.executable, "-c", _DBT_LS,
              json.dumps({"manifest": str(MANIFEST), "stub": str(stub), "select": cases[0][0]})]
        timed_run(rescue, base, root, ok=FINDINGS_OK)  # fills the cache
        plain, cold, fresh, warm = [], [], [], []
        outs: dict[str, str] = {}
        for _ in range(args.repeat):
            plain.append(timed_run(ls, base, root, ok=FINDINGS_OK)[0])
            wall, outs["cold"] = timed_run(rescue, {**base, "RESCUE_CACHE": "off"}, root, ok=FINDINGS_OK)
            cold.append(wall)
            shutil.rmtree(root / "cache" / "selections", ignore_errors=True)
            wall, outs["fresh"] = timed_run(rescue, base, root, ok=FINDINGS_OK)
            fresh.append(wall)
            wall, outs["warm"] = timed_run(rescue, base, root, ok=FINDINGS_OK)
            warm.append(wall)
        same = selections(outs["cold"]) == selections(outs["warm"]) == selections(outs["fresh"])
        chosen = selections(outs["warm"])
        mismatches = 0
        if args.check:
            from support.dbt_ls import dbt_ls

            from rescue_runner.adapters.dbt import load_manifest

            manifest = load_manifest(MANIFEST)
            for i, (sel, exc) in enumerate(cases[: args.check]):
                if set(chosen[f"bench-{i:03d}"]) != dbt_ls(manifest, stub, stub, sel, exc):
                    mismatches += 1
    p, c, f, w = (statistics.median(v) for v in (plain, cold, fresh, warm))
    sizes = sorted(len(v) for v in chosen.values())
    print(f"requests: {len(chosen)} (models per request: min {sizes[0]}, median {sizes[len(sizes) // 2]}, "
          f"max {sizes[-1]}); fresh processes, {args.repeat} interleaved rounds, medians")
    print(f"baseline: one `dbt ls` (import dbt, load manifest, ls): {p:6.2f} s {fmt(plain)}")
    print(f"rescue validate, {args.requests} requests, no cache:    {c:6.2f} s {fmt(cold)}"
          f"  -> {c / p:.2f}x one dbt ls (target <= 1.0)")
    print(f"rescue validate, new requests, manifest cached: {f:6.2f} s {fmt(fresh)}"
          f"  -> {f / p:.2f}x one dbt ls")
    print(f"rescue validate, second run with the cache:    {w:6.2f} s {fmt(warm)}"
          f"  -> {w / p:.2f}x one dbt ls (target <= 0.3)")
    print(f"selected sets of the three rescue runs identical: {'yes' if same else 'NO'}")
    if args.check:
        print(f"selected sets equal to dbt ls: {args.check - mismatches}/{args.check}")
    return 0 if same and not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
