"""One batch, without Prefect: ``dbt build`` of the batch, then its catalog (the flow's body).

``build_batch`` is what a flow run does. The Prefect flow ``transform_and_catalog`` (workers)
wraps it; embedded mode calls it directly with a standard ``logging`` logger and records the
run in the local run record (``adapters/local_runs.py``). This module never imports prefect.

Steps: get the project (the exact commit ``dbt_repo_commit`` of ``dbt_repo_url``, or a local
tree of it in ``dbt_project_path``; see ``flows/checkout.py``), parse it once (or use the
manifest the caller already parsed from that tree), ``dbt build`` the batch with that parsed
manifest, then ``dbt docs generate`` limited to the batch with the same manifest, and store
``run_results.json``, ``catalog.json`` and ``summary.json`` under
``<run_results_storage_path>/<run id>/``.

A failed model, a failing test or a partially successful microbatch model raises
``DbtBuildFailed`` naming the failing nodes. A failed catalog refresh does not: the models are
rebuilt, and re-running them to get a catalog would be worse. ``summary.json`` records it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rescue_runner.adapters import dbt_lean
from rescue_runner.adapters.dbt_cache import cached_parse, tree_revision
from rescue_runner.dbt_args import (
    DBT_ENV_OVERRIDES,
    dbt_build_args,
    dbt_docs_args,
    dbt_parse_args,
    parse_dbt_selects,
    parse_event_time,
)
from rescue_runner.flows import checkout
from rescue_runner.flows.artifacts import rebuilt_nodes
from rescue_runner.redact import redact
from rescue_runner.storage import RunArtifacts, credentials_from_env

_FAILED = ("error", "fail", "runtime error", "partial success")
_MAX_NAMED = 20  # failing nodes named in the exception message


def build_batch(
    log: Any,
    run_id: str,
    *,
    dbt_selects: dict[str, str],
    run_results_storage_path: str,
    dbt_project_path: str | None = None,
    dbt_repo_url: str | None = None,
    dbt_repo_commit: str | None = None,
    dbt_repo_token_secret: str | None = None,
    full_refresh: bool = False,
    event_time_start: str | None = None,
    event_time_end: str | None = None,
    profiles_dir: str | None = None,
    target: str | None = None,
    fast_test_edges: bool = True,
    manifest: Any = None,
    on_end: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Build one batch and refresh its catalog; return the summary (``DbtBuildFailed`` if dbt failed).

    The keyword arguments are the flow's parameters (see ``transform_and_catalog``).
    ``log``: a logger (Prefect's run logger or a ``logging.Logger``); ``run_id``: the run's id,
    the folder of its artifacts. ``manifest`` (embedded mode): a dbt Manifest the caller parsed
    from ``dbt_project_path`` with the same profiles dir and target; the parse is then skipped.
    ``on_end(summary)`` is called when the batch ends, success or failure (the result artifact).
    """
    # A local folder or a storage URL (s3://...): written locally, then published there.
    artifacts = RunArtifacts(run_results_storage_path, run_id, credentials_from_env())
    out_dir = artifacts.local_dir
    repo = (dbt_repo_url, dbt_repo_commit, dbt_repo_token_secret)
    summary: dict[str, Any] = {"flow_run_id": run_id, "status": "running", "started_at": _now(),
                               "target": target, "full_refresh": full_refresh, "seconds": {}}
    try:
        try:
            result = _run(log, summary, out_dir, dbt_selects, dbt_project_path, repo, full_refresh,
                          event_time_start, event_time_end, profiles_dir, target, fast_test_edges, manifest)
        except Exception as exc:
            if summary["status"] == "running":  # failed before dbt reported: still leave a summary
                summary.update(status="failed", error=redact(f"{type(exc).__name__}: {exc}"),
                               ended_at=_now())
                _write_json(out_dir / "summary.json", summary)
            with contextlib.suppress(Exception):  # the run's own failure is what it reports
                artifacts.publish()
            raise
        log.info("artifacts: %s", ", ".join(artifacts.publish()))
        return result
    finally:
        artifacts.cleanup()
        if on_end is not None:
            on_end(summary)


class DbtBuildFailed(RuntimeError):
    """dbt reported failed nodes (or could not run); the message names them."""


def _run(log: Any, summary: dict[str, Any], out_dir: Path, dbt_selects: dict[str, str],
         dbt_project_path: str | None, repo: tuple[str | None, str | None, str | None],
         full_refresh: bool, event_time_start: str | None, event_time_end: str | None,
         profiles_dir: str | None, target: str | None, fast_test_edges: bool,
         preloaded: Any) -> dict[str, Any]:
    select, exclude = parse_dbt_selects(dbt_selects)
    start, end = parse_event_time(event_time_start), parse_event_time(event_time_end)
    summary.update({
        "select": list(select),
        "exclude": list(exclude),
        "event_time_start": start.isoformat() if start else None,
        "event_time_end": end.isoformat() if end else None,
    })
    profiles_dir = profiles_dir or os.environ.get("DBT_PROFILES_DIR")  # the worker's own, if any
    with tempfile.TemporaryDirectory(prefix="rescue-dbt-") as tmp, _without_dbt_env(log), \
            _releasing_connections(log), fast_cycle_check(), dbt_lean.lean_invocations():
        project_dir, profiles_dir = checkout.project_dirs(*repo, dbt_project_path, profiles_dir, summary)
        checkout.check_profile_paths(project_dir, profiles_dir, target)
        work = Path(tmp) / "target"
        common: dict[str, Any] = dict(project_dir=str(project_dir), profiles_dir=profiles_dir,
                                      target=target, log_path=str(out_dir))  # dbt.log beside the summary
        build_args = dbt_build_args(select=select, exclude=exclude, target_path=str(work),
                                    full_refresh=full_refresh, event_time_start=start,
                                    event_time_end=end, fast_test_edges=fast_test_edges,
                                    write_json=False, cache_selected_only=dbt_lean.enabled(), **common)
        summary["dbt_args"] = build_args
        log.info("dbt %s", " ".join(build_args))

        manifest = preloaded
        if manifest is None:  # parsed once per commit and configuration on this machine
            manifest, summary["manifest"], _ = _timed(summary, "parse", lambda: cached_parse(
                project_dir, profiles_dir, target, lambda: _parse(dbt_parse_args(**common)),
                revision=tree_revision(summary.get("project"))))
        else:
            summary["seconds"]["parse"] = 0.0
            summary["manifest"] = "preloaded by the caller (embedded mode)"
        res = _timed(summary, "build", lambda: _invoke(manifest, build_args))
        _store_run_results(res, work / "run_results.json", out_dir / "run_results.json")
        failed, skipped, counts = _outcome(res)
        summary.update(counts=counts, failed=failed, skipped=skipped, rebuilt=rebuilt_nodes(res))
        if res.exception is not None or failed or not res.success:
            summary.update(status="failed", catalog="skipped (build failed)", ended_at=_now())
            _write_json(out_dir / "summary.json", summary)
            raise DbtBuildFailed(_failure_message(res, failed, skipped))

        docs = _timed(summary, "docs", lambda: _invoke(manifest, dbt_docs_args(
            select=select, exclude=exclude, target_path=str(work), **common)))
        catalog = work / "catalog.json"
        if docs.success and catalog.is_file():
            shutil.copyfile(catalog, out_dir / "catalog.json")
            summary["catalog"] = "ok"
        else:
            summary["catalog"] = f"failed: {docs.exception or 'dbt docs generate reported errors'}"
            log.warning("models rebuilt, but the catalog refresh failed: %s", summary["catalog"])
    summary.update(status="success", ended_at=_now())
    _write_json(out_dir / "summary.json", summary)
    log.info("dbt build ok: %s", counts)
    return summary


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _timed(summary: dict[str, Any], step: str, fn: Any) -> Any:
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        summary["seconds"][step] = round(time.perf_counter() - t0, 3)


@contextlib.contextmanager
def fast_cycle_check() -> Iterator[None]:
    """Make dbt's graph cycle check linear while dbt runs in this block.

    Every dbt build links the whole project graph and calls networkx ``find_cycle``,
    whose edge-by-edge search takes seconds on large projects (3.5 s at 4,000 nodes,
    12-18 s at 7,500) even when the graph is acyclic, as it always is here. A
    topological check answers the same question in milliseconds; only when it finds
    a cycle does dbt's own search run, to name the cycle. Internal dbt API
    (``dbt.compilation.Linker``), which is why dbt-core is pinned to 1.11.x.
    """
    import networkx as nx
    from dbt.compilation import Linker

    original = Linker.find_cycles

    def find_cycles(self: Any) -> Any:
        if nx.is_directed_acyclic_graph(self.graph):
            return None
        return original(self)

    Linker.find_cycles = find_cycles  # type: ignore[method-assign]
    try:
        yield
    finally:
        Linker.find_cycles = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _releasing_connections(log: Any) -> Iterator[None]:
    """Close dbt's warehouse connections before the run reports its final state.

    dbt-duckdb keeps the database open (and the file locked) until the process
    exits, which is after Prefect has marked the run COMPLETED: the next batch
    would then fail to open the warehouse.
    """
    try:
        yield
    finally:
        try:
            from dbt.adapters.factory import FACTORY, reset_adapters

            managers = [type(a).ConnectionManager for a in FACTORY.adapters.values()]
            reset_adapters()
            for manager in managers:
                env = getattr(manager, "_ENV", None)  # dbt-duckdb's shared database handle
                if env is not None and callable(getattr(env, "close", None)):
                    env.close()
                closer = getattr(manager, "close_all_connections", None)
                if callable(closer):
                    closer()
        except Exception as exc:  # never mask the run's own outcome
            log.warning("could not close dbt connections: %s", exc)


@contextlib.contextmanager
def _without_dbt_env(log: Any) -> Iterator[None]:
    """Hide DBT_* variables that would override the typed arguments (target, full refresh ...)."""
    saved = {k: os.environ.pop(k) for k in DBT_ENV_OVERRIDES if k in os.environ}
    if saved:
        log.warning("ignoring %s from the environment: rescues take these from their parameters",
                    ", ".join(sorted(saved)))
    try:
        yield
    finally:
        os.environ.update(saved)


def _parse(args: list[str]) -> Any:
    from dbt.cli.main import dbtRunner

    res = dbtRunner().invoke(args)
    if not res.success or res.result is None:
        raise DbtBuildFailed(f"dbt parse failed: {res.exception or 'see the dbt log above'}")
    return res.result


def _invoke(manifest: Any, args: list[str]) -> Any:
    from dbt.cli.main import dbtRunner

    return dbtRunner(manifest=manifest).invoke(args)


def _outcome(res: Any) -> tuple[list[dict[str, str]], list[str], dict[str, int]]:
    results = getattr(res.result, "results", None) or []
    failed, skipped, counts = [], [], {}  # type: ignore[var-annotated]
    for r in results:
        status = str(getattr(r.status, "value", r.status))
        counts[status] = counts.get(status, 0) + 1
        if status in _FAILED:
            failed.append({"unique_id": r.node.unique_id, "status": status,
                           "message": str(r.message or "")[:500]})
        elif status == "skipped":
            skipped.append(r.node.unique_id)
    return failed, skipped, dict(sorted(counts.items()))


def _failure_message(res: Any, failed: Sequence[dict[str, str]], skipped: Sequence[str]) -> str:
    if not failed:
        return f"dbt build failed: {res.exception or 'dbt reported an error before running any node'}"
    named = "; ".join(f"{f['unique_id']} ({f['status']}: {f['message'][:160]})" for f in failed[:_MAX_NAMED])
    more = f" and {len(failed) - _MAX_NAMED} more" if len(failed) > _MAX_NAMED else ""
    skip = f"; {len(skipped)} downstream node(s) skipped" if skipped else ""
    return f"dbt build failed for {len(failed)} node(s): {named}{more}{skip}"


def _store_run_results(res: Any, produced: Path, dest: Path) -> None:
    if produced.is_file():
        shutil.copyfile(produced, dest)
    elif res.result is not None and hasattr(res.result, "write"):
        res.result.write(str(dest))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(redact(json.dumps(data, indent=2, sort_keys=True, default=str)) + "\n", encoding="utf-8")
    tmp.replace(path)
