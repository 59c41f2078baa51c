"""Validate 100 rescue requests against the real GitLab manifest, beside one plain `dbt ls`.

Prints: manifest load, the 100 validations, one `dbt ls` (dbt's own command on a preloaded
manifest, and with the manifest load a cold dbt needs), the ratio, and whether every selected
set equals dbt ls. Skips (exit 0) when ../shared/data/manifests is absent.

    python benchmarks/bench_validate.py [--requests 100] [--check 10]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO.parent / "shared" / "data" / "manifests" / "gitlab-analytics.manifest.json.gz"
sys.path.insert(0, str(REPO / "tests"))


Case = tuple[list[str], list[str]]


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--check", type=int, default=100, help="how many selections to compare with dbt ls")
    args = ap.parse_args()
    if not MANIFEST.is_file():
        print(f"skip: {MANIFEST.name} not found beside the repository (../shared/data/manifests)")
        return 0
    import gzip
    import json

    from support.dbt_ls import dbt_ls, make_stub_project

    from rescue_runner import app
    from rescue_runner.adapters.dbt import DbtProject
    from rescue_runner.config import config_from_data

    with gzip.open(MANIFEST, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    names = sorted(n["name"] for n in data["nodes"].values() if n["resource_type"] == "model")
    tags = ["product", "mnpi_exception", "people", "zuora", "gainsight", "safe"]
    del data
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stub = make_stub_project(root / "stub", "gitlab_snowflake")
        reqdir = root / "rescues"
        reqdir.mkdir()
        cases = make_requests(reqdir, names, tags, args.requests)
        cfg = config_from_data(root, {"dbt": {"project_dir": str(stub), "manifest": str(MANIFEST)}})

        t0 = time.perf_counter()
        project = DbtProject.from_manifest(MANIFEST, project_root=stub)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = app.validate([reqdir], cfg, cwd=root, dbt=project)
        t_validate = time.perf_counter() - t0

        t0 = time.perf_counter()
        dbt_ls(project.manifest, stub, stub, cases[0][0], cases[0][1])
        t_ls = time.perf_counter() - t0

        by_id = {r.id: r for r in report.requests}
        mismatches = 0
        for i, (sel, exc) in enumerate(cases[: args.check]):
            if set(by_id[f"bench-{i:03d}"].models) != dbt_ls(project.manifest, stub, stub, sel, exc):
                mismatches += 1
    total = t_load + t_validate
    cold_ls = t_load + t_ls
    sizes = sorted(len(r.models) for r in report.requests)
    print(f"requests validated           : {len(report.requests)} (models per request: "
          f"min {sizes[0]}, median {sizes[len(sizes) // 2]}, max {sizes[-1]})")
    print(f"manifest load (once)         : {t_load:6.2f} s")
    print(f"validate {args.requests} requests        : {t_validate:6.2f} s "
          f"({1000 * t_validate / args.requests:.1f} ms per request)")
    print(f"rescue total (load+validate) : {total:6.2f} s")
    print(f"one dbt ls, manifest loaded  : {t_ls:6.2f} s")
    print(f"one dbt ls, cold (load + ls) : {cold_ls:6.2f} s")
    print(f"ratio rescue total / cold dbt ls      : {total / cold_ls:5.2f}  (target <= 1.0)")
    print(f"ratio per request vs dbt ls per request: {t_ls * args.requests / t_validate:5.1f}x faster")
    print(f"selected sets equal to dbt ls: {args.check - mismatches}/{args.check}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
