"""One batch on Prefect: deploy the flow, check the queue, submit a batch, read a run.

How a planned batch becomes a flow run (``submit_batch``) is decided here and only here;
``executors`` adapts these calls to the runner's ``Executor`` port.

With ``PREFECT_API_URL`` set, batches become flow runs of the ``dbt_rerun``
deployment and workers run them. Without it, ``submit_batch`` runs the flow's
body (``flows/batch.py``) in this process (embedded mode), without Prefect: the
run is recorded in the local run record (``.rescue/runs-local``, see
``adapters/local_runs.py``) before it starts and when it ends.

Every batch builds an exact commit: a worker gets the repository URL and the
SHA (``dbt_repo_url``, ``dbt_repo_commit``) and fetches that commit; embedded
mode builds a tree of the same commit written from the runner's clone. The
deployment stores paths inside the repository only, never this machine's.

Importing this module does not import prefect or dbt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import storage
from .adapters import prefect_api
from .config import Config
from .contention import Ask, ContentionSnapshot, Decision, decide
from .dbt_args import UnsafeDbtArgument, check_selector, dbt_build_args
from .deployment_mapping import Capabilities, MappingError, capabilities, check_schema, map_parameters
from .errors import RescueError
from .model import EventTime, PlannedBatch, ProjectGraph
from .reporting.prefect_run import TAG, RunContext, artifact_key, context_markdown, run_tags

API_URL_ENV = "PREFECT_API_URL"
EMBEDDED = "embedded"
SERVER = "server"
_GLOB_CHARS = frozenset("*?[]")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")  # git@host:org/repo.git


@dataclass(frozen=True)
class DeployReport:
    """What ``rescue deploy`` did, line by line in ``notes``."""

    api_url: str
    work_pool: str
    work_queue: str
    queue_concurrency: int
    deployment: str  # "<flow>/<deployment>"
    deployment_id: str
    parameters: Mapping[str, Any]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"api_url": self.api_url, "work_pool": self.work_pool, "work_queue": self.work_queue,
                "queue_concurrency": self.queue_concurrency, "deployment": self.deployment,
                "deployment_id": self.deployment_id, "parameters": dict(self.parameters),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class SubmittedRun:
    """One batch handed to Prefect (``mode`` server) or run in-process (``mode`` embedded).

    ``state`` is the state type right after submission (SCHEDULED ...) in server
    mode and the final state (COMPLETED, FAILED ...) in embedded mode.
    """

    flow_run_id: str
    url: str | None
    name: str
    idempotency_key: str
    mode: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    state: str | None = None
    message: str | None = None
    artifacts_dir: str | None = None
    tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. the context artifact could not be attached (the run exists)
    commit: str | None = None  # the commit the run builds

    def to_dict(self) -> dict[str, Any]:
        return {"flow_run_id": self.flow_run_id, "url": self.url, "name": self.name,
                "idempotency_key": self.idempotency_key, "mode": self.mode,
                "parameters": dict(self.parameters), "state": self.state, "message": self.message,
                "artifacts_dir": self.artifacts_dir, "tags": list(self.tags), "notes": list(self.notes),
                "commit": self.commit}


@dataclass(frozen=True)
class RunStatus:
    """A flow run's current state, as plain data."""

    flow_run_id: str
    name: str
    state: str | None
    state_name: str | None
    message: str | None
    final: bool
    url: str | None


# ---- pure helpers --------------------------------------------------------------------------

def prefect_api_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``PREFECT_API_URL`` from the environment, or None (embedded mode)."""
    value = (os.environ if environ is None else environ).get(API_URL_ENV, "").strip()
    return value or None


def idempotency_key(deployment_id: str, request_id: str, content_hash: str, batch_index: int,
                    attempt: int) -> str:
    """sha256 over deployment id, request id, request content hash, batch index and attempt."""
    blob = json.dumps([deployment_id, request_id, content_hash, batch_index, attempt], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def run_name(request_id: str, batch_index: int) -> str:
    """The flow run name of a batch: ``<request id>-batch-<k>``."""
    return f"{request_id}-batch-{batch_index}"


def run_tag(request_id: str) -> str:
    return f"rescue:{request_id}"


def batch_selectors(models: Sequence[str], graph: ProjectGraph) -> tuple[str, ...]:
    """One exact dbt selector per unique_id: ``path:<file>,package:<package>``.

    dbt has no unique_id selector method; a model's own file, intersected with its
    package, selects exactly that node (names alone also match folders and other
    packages). Refuses nodes whose file is shared with another selectable node or
    cannot be written safely.
    """
    by_file: dict[tuple[str, str], list[str]] = {}
    for uid, info in graph.nodes.items():
        by_file.setdefault((_package(uid), info.original_file_path), []).append(uid)
    selectors = []
    for uid in models:
        node = graph.nodes.get(uid)
        if node is None:
            raise RescueError(f"{uid}: not a selectable node of the project",
                              hint="re-plan the request against the current manifest")
        ofp = node.original_file_path.replace("\\", "/")
        if not ofp or _GLOB_CHARS & set(ofp):
            raise RescueError(f"{uid}: its file path {ofp!r} cannot be used as an exact selector")
        others = [o for o in by_file.get((_package(uid), node.original_file_path), []) if o != uid]
        if others:
            raise RescueError(f"{uid}: {ofp} also defines {', '.join(sorted(others))}; "
                              "the batch cannot select it alone",
                              hint="select all nodes of that file in one batch or split the file")
        sel = f"path:{ofp},package:{_package(uid)}"
        try:
            selectors.append(check_selector(sel))
        except UnsafeDbtArgument as exc:
            raise RescueError(f"{uid}: {exc}") from exc
    return tuple(selectors)


def batch_parameters(batch: PlannedBatch, selectors: Sequence[str],
                     event_time: EventTime | None = None, *, commit: str | None = None,
                     repo_url: str | None = None, token_secret: str | None = None) -> dict[str, Any]:
    """The per-batch flow parameters (everything else is a deployment default).

    ``commit``: the exact SHA the run builds; ``repo_url`` (server mode): where the worker
    fetches it, without credentials; ``token_secret``: the Prefect Secret block holding
    the token, read on the worker.
    """
    params: dict[str, Any] = {
        "dbt_selects": {"select": " ".join(selectors)},
        "full_refresh": batch.full_refresh,
        "event_time_start": event_time.start.astimezone(UTC).isoformat() if event_time else None,
        "event_time_end": event_time.end.astimezone(UTC).isoformat() if event_time else None,
    }
    if commit is not None:
        params["dbt_repo_commit"] = commit
    if repo_url is not None:
        params["dbt_repo_url"] = repo_url
        params["dbt_repo_token_secret"] = token_secret
    try:  # the flow would refuse these too; say so before anything is submitted
        dbt_build_args(select=selectors, project_dir=".", full_refresh=batch.full_refresh,
                       event_time_start=event_time.start if event_time else None,
                       event_time_end=event_time.end if event_time else None)
    except UnsafeDbtArgument as exc:
        raise RescueError(f"batch {batch.index}: {exc}") from exc
    return params


def deployment_parameters(config: Config) -> dict[str, Any]:
    """Deployment defaults from rescue.yaml: project, profile, target, artifact storage.

    The project and profiles folders are paths inside the repository ('/'-separated), as
    every checkout of the commit has them; a profiles folder outside the repository is
    left to the worker (``DBT_PROFILES_DIR`` in its environment, or dbt's default).
    """
    root = repo_root(config)
    return {
        "dbt_project_path": _inside(root, config.dbt.project_dir, "dbt.project_dir"),
        "profiles_dir": _inside(root, config.dbt.profiles_dir, None),
        "target": config.dbt.target,
        "run_results_storage_path": str(_storage(config)),
    }


def repo_root(config: Config) -> Path:
    """The root of the git repository holding rescue.yaml; RescueError when there is none."""
    from .adapters.git import repo_root as git_root

    try:
        return git_root(config.root)
    except RescueError as exc:
        raise RescueError(f"{config.root}: not inside a git repository; flow runs build a commit of the "
                          "repository that holds rescue.yaml and the dbt project",
                          hint="run from a clone of the repository (rescue.yaml at its root)") from exc


def repository_url(config: Config) -> str:
    """Where workers fetch the repository: ``repository.url``, else the runner's ``audit.remote``.

    Credentials never travel as parameters: they are dropped here (give workers a
    ``repository.token_secret`` or their own git credentials). A local path becomes a
    ``file://`` URL.
    """
    from .adapters.git_checkout import remote_url
    from .redact import redact_url, register_url

    url = config.repository.url or remote_url(repo_root(config), config.audit.remote)
    if not url:
        raise RescueError(f"no repository URL for flow runs: remote {config.audit.remote!r} has no URL",
                          hint="set repository.url in rescue.yaml (the URL workers fetch from)")
    register_url(url)
    if "://" not in url and not _SCP_LIKE.match(url):
        path = Path(url)
        url = (path if path.is_absolute() else (repo_root(config) / path)).resolve().as_uri()
    return redact_url(url)


def ui_url(api_url: str, flow_run_id: str) -> str:
    """The Prefect UI page of a flow run (the API URL without its trailing /api)."""
    from .redact import redact_url

    base = redact_url(api_url).rstrip("/")
    base = base[: -len("/api")] if base.endswith("/api") else base
    return f"{base}/runs/flow-run/{flow_run_id}"


# ---- use cases -----------------------------------------------------------------------------

def deploy(config: Config, *, api_url: str | None = None,
           job_variables: Mapping[str, Any] | None = None) -> DeployReport:
    """Create or update the work pool, the queue and the ``dbt_rerun`` deployment (idempotent).

    Needs a Prefect server (``PREFECT_API_URL`` or ``api_url``). ``job_variables``
    go to the process worker (e.g. ``{"env": {...}}`` for the warehouse profile).
    """
    url = api_url or prefect_api_url()
    if url is None:
        raise RescueError("PREFECT_API_URL is not set: `rescue deploy` needs a Prefect server",
                          hint="export PREFECT_API_URL=http://<host>:4200/api; without a server, "
                          "batches run in-process and need no deployment")
    p = config.prefect
    if p.mapping is not None:
        raise RescueError(f"prefect.mapping is set: {p.flow}/{p.deployment} is your own deployment, and "
                          "`rescue deploy` does not create or change it",
                          hint="run `rescue deploy --check` to compare the mapping with it")
    prefect_api.check_api(url)  # a dead server is the first thing to say
    params = deployment_parameters(config)
    if config.storage.credentials_block:  # the block's name only: workers load it themselves
        job_variables = dict(job_variables or {})
        job_variables["env"] = {**dict(job_variables.get("env") or {}),
                                storage.CREDENTIALS_BLOCK_ENV: config.storage.credentials_block}
    from . import __version__
    from .flows.transform_and_catalog import transform_and_catalog

    res = prefect_api.deploy(
        url, flow=transform_and_catalog, work_pool=p.work_pool, work_queue=p.work_queue,
        queue_concurrency=p.queue_concurrency,
        flow_name=p.flow, deployment=p.deployment, parameters=params, job_variables=job_variables,
        description="rescue-runner: dbt build of one rescue batch, then its catalog", version=__version__,
        heartbeat_seconds=config.liveness.heartbeat_seconds,
        crash_after_seconds=config.liveness.crash_after_seconds,
    )
    return DeployReport(api_url=url, work_pool=p.work_pool, work_queue=p.work_queue,
                        queue_concurrency=p.queue_concurrency, deployment=f"{p.flow}/{p.deployment}",
                        deployment_id=res.deployment_id, parameters=params, notes=res.notes)


@dataclass(frozen=True)
class DeploymentCheck:
    """``rescue deploy --check``: what the target deployment can carry, and what does not fit."""

    deployment: str
    deployment_id: str
    mapped: bool  # False: rescue-runner's own flow
    capabilities: Capabilities
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        c = self.capabilities
        return {"deployment": self.deployment, "deployment_id": self.deployment_id, "mapped": self.mapped,
                "ok": self.ok, "problems": list(self.problems),
                "capabilities": {"full_refresh": c.full_refresh, "event_time": c.event_time,
                                 "pinned_commit": c.pinned, "branch_only": c.ref_only}}

    def lines(self) -> list[str]:
        how = "through prefect.mapping" if self.mapped else "rescue-runner's own flow"
        out = [f"deployment {self.deployment} ({self.deployment_id}), {how}:"]
        out += [f"  {line}" for line in self.capabilities.lines()]
        out += [f"problem: {p}" for p in self.problems]
        if self.capabilities.ref_only:
            out.append("warning: requests are flagged RR220 "
                       "(set policy.enforcement.RR220: hard to refuse them)")
        return out


def check_deployment(config: Config, *, api_url: str | None = None) -> DeploymentCheck:
    """Read the target deployment's parameter schema and say which request features it can carry.

    With ``prefect.mapping``, every mapped parameter must exist (with a fitting type); without
    it, the deployment must take every parameter rescue-runner's flow sends.
    """
    url = api_url or prefect_api_url()
    if url is None:
        raise RescueError("PREFECT_API_URL is not set: checking a deployment needs a Prefect server",
                          hint="export PREFECT_API_URL=http://<host>:4200/api")
    p = config.prefect
    dep = prefect_api.read_deployment(url, f"{p.flow}/{p.deployment}")
    own = ("dbt_selects", "full_refresh", "event_time_start", "event_time_end")
    problems = check_schema(p.mapping, dep.parameter_schema, own)
    return DeploymentCheck(deployment=f"{p.flow}/{p.deployment}", deployment_id=dep.id,
                           mapped=p.mapping is not None, capabilities=capabilities(p.mapping),
                           problems=tuple(problems))


def contention_snapshot(config: Config, *, now: datetime | None = None,
                        api_url: str | None = None) -> ContentionSnapshot | None:
    """The pool and queue as the server sees them now (for the forecast); None in embedded mode."""
    url = api_url or prefect_api_url()
    if url is None:
        return None
    p = config.prefect
    return prefect_api.contention_snapshot(url, work_pool=p.work_pool, work_queue=p.work_queue,
                                           lookahead_minutes=p.lookahead_minutes, now=now,
                                           horizon_minutes=p.forecast.horizon_hours * 60,
                                           history_runs=p.forecast.history_runs)


def contention(config: Config, heavy: bool = False, now: datetime | None = None, *,
               ask: Ask | None = None, api_url: str | None = None) -> Decision:
    """go/wait for one batch now, with reasons (shown by ``apply --dry-run``).

    ``ask``: the batch's estimate and window (default: a light batch of unknown length).
    """
    now = now or datetime.now(UTC)
    ask = ask or Ask(heavy=heavy)
    snapshot = contention_snapshot(config, now=now, api_url=api_url)
    if snapshot is None:
        return Decision(go=True, reasons=("go: embedded mode (no PREFECT_API_URL): the batch runs in "
                                          "this process; there is no shared queue to check",))
    return decide(snapshot, ask, settings=config.prefect, now=now)


def submit_batch(
    config: Config,
    request_id: str,
    content_hash: str,
    batch: PlannedBatch,
    attempt: int,
    graph: ProjectGraph,
    *,
    event_time: EventTime | None = None,
    verify: Callable[[Sequence[str]], Collection[str]] | None = None,
    api_url: str | None = None,
    manifest: Any = None,
    context: RunContext | None = None,
    commit: str | None = None,
) -> SubmittedRun:
    """Submit one batch as a flow run of ``dbt_rerun`` (or run it in-process without a server).

    ``verify`` (optional): resolves selectors to model unique_ids with dbt's own
    selector code (e.g. ``DbtProject.select``); the batch is refused unless they are
    exactly its models. After a server submit, the returned run must belong to the
    deployment and carry the asked parameters: Prefect scopes idempotency keys per
    flow and returns the earlier run, even another deployment's, on reuse.
    ``manifest`` (embedded mode only): the dbt Manifest the caller parsed from
    ``config.dbt.project_dir`` with the same profiles dir and target (e.g.
    ``DbtProject.manifest`` used for planning); used only if that is the commit's tree.
    ``context``: the request's context; the run then carries its tags (``rescue``,
    ``rescue:<id>``, ``ticket:<key>``, ``batch:<k>/<n>``, ``full-refresh``) and a markdown
    context artifact attached right after the run is created (embedded: before the batch starts).
    ``commit``: the approved commit to build (a SHA or a ref of the repository holding
    rescue.yaml; default HEAD). Never the working tree: uncommitted changes are not built,
    and in server mode a commit the remote does not have fails on the worker.
    """
    if attempt < 1:
        raise RescueError(f"attempt must be >= 1, got {attempt}")
    selectors = batch_selectors(batch.models, graph)
    if verify is not None:
        _verify_selection(batch, graph, selectors, verify)
    name = run_name(request_id, batch.index)
    tags = run_tags(context) if context is not None else [TAG, run_tag(request_id)]
    url = api_url or prefect_api_url()
    if url is None:
        from .adapters.git_checkout import tree_at

        sha, tree = tree_at(repo_root(config), commit or "HEAD", config.root / ".rescue" / "checkouts")
        params = batch_parameters(batch, selectors, event_time, commit=sha)
        return _run_embedded(config, request_id, content_hash, batch, attempt, params, name, manifest, tags,
                             tree, context)
    from .adapters.git_checkout import commit_of

    p = config.prefect
    dep = prefect_api.read_deployment(url, f"{p.flow}/{p.deployment}")
    sha = commit_of(repo_root(config), commit or "HEAD")
    sends_url = p.mapping is None or p.mapping.repo_url is not None
    params = batch_parameters(batch, selectors, event_time, commit=sha,
                              repo_url=repository_url(config) if sends_url else None,
                              token_secret=config.repository.token_secret)
    if p.mapping is not None:
        try:
            params = map_parameters(p.mapping, params, branch=config.audit.protected_branch)
        except MappingError as exc:
            raise RescueError(f"batch {batch.index}: {exc}",
                              hint="validation reports this as RR020/RR021; fix prefect.mapping") from exc
    unknown = sorted(set(params) - dep.parameter_names)
    if unknown:
        hint = "fix prefect.mapping in rescue.yaml (`rescue deploy --check` compares it with the " \
            "deployment)" if p.mapping is not None else "run `rescue deploy` to update the deployment"
        raise RescueError(f"deployment {p.flow}/{p.deployment} has no parameter(s) {unknown}", hint=hint)
    key = idempotency_key(dep.id, request_id, content_hash, batch.index, attempt)
    run = prefect_api.submit(url, deployment=dep, parameters=params, name=name,
                             tags=tags, idempotency_key=key)
    problems = []
    if run.deployment_id != dep.id:
        problems.append(f"it belongs to deployment {run.deployment_id}, not {dep.id}")
    problems += [f"parameter {k} is {run.parameters.get(k)!r}, not {v!r}"
                 for k, v in params.items() if run.parameters.get(k) != v]
    if run.name != name:
        problems.append(f"it is named {run.name!r}, not {name!r}")
    if problems:
        raise RescueError(
            f"idempotency key {key[:16]}… of batch {batch.index} returned flow run {run.id}, "
            f"which is not this batch: {'; '.join(problems)}. Prefect scopes idempotency keys per "
            f"flow ({p.flow}), so another deployment of that flow already used this key",
            hint=f"inspect {ui_url(url, run.id)}; delete that run or resubmit with the next attempt number")
    sub = SubmittedRun(flow_run_id=run.id, url=ui_url(url, run.id), name=name, idempotency_key=key,
                       mode=SERVER, parameters=params, state=run.state_type, message=run.state_message,
                       tags=tuple(run.tags), commit=sha)
    return _with_context(sub, context, api_url=url)


def _with_context(sub: SubmittedRun, context: RunContext | None, *, api_url: str) -> SubmittedRun:
    """Attach the context artifact to a created run (best effort: the run exists either way)."""
    if context is None:
        return sub
    from dataclasses import replace

    from .adapters import prefect_artifacts

    failed = prefect_artifacts.attach_markdown(
        sub.flow_run_id, context_markdown(context), key=artifact_key(context.request_id),
        description=f"rescue {context.request_id}: batch {context.batch} of {len(context.batches)}",
        api_url=api_url)
    if failed is None:
        return sub
    return replace(sub, notes=(*sub.notes, f"context artifact not attached: {failed}"))


def run_status(config: Config, flow_run_id: str, *, api_url: str | None = None) -> RunStatus:
    """The current state of a submitted batch (server mode)."""
    url = api_url or prefect_api_url()
    if url is None:
        raise RescueError("PREFECT_API_URL is not set: embedded runs finish before submit returns",
                          hint="read the state from the SubmittedRun, or set PREFECT_API_URL")
    run = prefect_api.read_flow_run(url, flow_run_id)
    return RunStatus(run.id, run.name, run.state_type, run.state_name, run.state_message,
                     run.is_final, ui_url(url, run.id))


def wait_for_run(config: Config, flow_run_id: str, *, timeout: float, api_url: str | None = None,
                 poll_seconds: float = 1.0) -> RunStatus:
    """Poll a submitted batch until it is final or ``timeout`` seconds pass."""
    url = api_url or prefect_api_url()
    if url is None:
        raise RescueError("PREFECT_API_URL is not set")
    run = prefect_api.wait_for_flow_run(url, flow_run_id, timeout=timeout, poll_seconds=poll_seconds)
    return RunStatus(run.id, run.name, run.state_type, run.state_name, run.state_message,
                     run.is_final, ui_url(url, run.id))


# ---- embedded mode -------------------------------------------------------------------------

def embedded_runs_home(config: Config) -> Path:
    """Where embedded mode records its runs: ``.rescue/runs-local`` of the repository.

    One JSON file per run (``adapters/local_runs.py``); ``PREFECT_HOME`` plays no part, as no
    Prefect API is involved in embedded mode.
    """
    return config.root / ".rescue" / "runs-local"


def _run_embedded(config: Config, request_id: str, content_hash: str, batch: PlannedBatch,
                  attempt: int, params: Mapping[str, Any], name: str, manifest: Any,
                  tags: Sequence[str], tree: Path, context: RunContext | None) -> SubmittedRun:
    """Run the batch in this process, recorded in the local run record.

    The record is written RUNNING before the batch starts (a runner killed during the batch
    leaves it so: the next runner adopts the run as an orphan, never reruns it), then COMPLETED
    or FAILED with dbt's message. An exception in the batch is a FAILED run, never raised here.
    """
    from .adapters import local_runs, prefect_artifacts
    from .flows.batch import build_batch
    from .redact import redact
    from .reporting.prefect_run import result_markdown

    home = embedded_runs_home(config)
    if config.storage.credentials_block:  # the batch finds the block as a worker would
        os.environ.setdefault(storage.CREDENTIALS_BLOCK_ENV, config.storage.credentials_block)
    key = idempotency_key(EMBEDDED, request_id, content_hash, batch.index, attempt)
    local = deployment_parameters(config)  # paths inside the repository -> inside the commit's tree
    local["dbt_project_path"] = str(tree / local["dbt_project_path"])
    local["profiles_dir"] = str(tree / local["profiles_dir"]) if local["profiles_dir"] else \
        str(config.dbt.profiles_dir.resolve())
    run_id = local_runs.start(home, name=name, tags=tags, parameters=params, idempotency_key=key)
    notes = []
    if context is not None:
        failed = prefect_artifacts.attach_markdown(
            run_id, context_markdown(context), key=artifact_key(context.request_id),
            description=f"rescue {context.request_id}: batch {context.batch} of {len(context.batches)}",
            local_home=home)
        if failed is not None:
            notes.append(f"context artifact not attached: {failed}")
    log = _batch_logger()

    def on_end(summary: Mapping[str, Any]) -> None:
        failed = prefect_artifacts.attach_markdown(
            run_id, result_markdown(summary), key=artifact_key(request_id, "result"),
            description="rescue batch result", local_home=home)
        if failed is not None:
            log.warning("could not attach the result artifact: %s", failed)

    state, message = local_runs.COMPLETED, None
    try:
        build_batch(log, run_id, manifest=manifest, on_end=on_end, **{**local, **params})
    except Exception as exc:  # the batch's failure is its run's state, as on a worker
        state, message = local_runs.FAILED, redact(f"{type(exc).__name__}: {exc}")
        log.error("batch %s failed: %s", name, message)
    local_runs.finish(home, run_id, state, message)
    return SubmittedRun(flow_run_id=run_id, url=None, name=name, idempotency_key=key, mode=EMBEDDED,
                        parameters=params, state=state, message=message,
                        artifacts_dir=str(storage.join(_storage(config), run_id)), tags=tuple(tags),
                        notes=tuple(notes), commit=params.get("dbt_repo_commit"))


def _batch_logger() -> logging.Logger:
    """The batch's log lines: to stderr (the apply log file when output is captured, see quiet.py)."""
    log = logging.getLogger("rescue_runner.batch")
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (it may be replaced after the handler is made)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _storage(config: Config) -> Path | str:
    """Where flow runs store artifacts: a storage URL as given, a local path made absolute."""
    path = config.prefect.run_results_storage_path or config.root / ".rescue" / "runs"
    return path if isinstance(path, str) else path.resolve()


def _inside(root: Path, path: Path, what: str | None) -> str | None:
    """``path`` relative to the repository root ('/'-separated); None (or RescueError) outside it."""
    try:
        return path.resolve().relative_to(root).as_posix() or "."
    except ValueError:
        if what is None:
            return None
        raise RescueError(f"{what} {path} is outside the git repository {root}",
                          hint="flow runs build a commit of the repository: keep the project in it") from None


def _package(unique_id: str) -> str:
    parts = unique_id.split(".")
    return parts[1] if len(parts) > 2 else ""


def _verify_selection(batch: PlannedBatch, graph: ProjectGraph, selectors: Sequence[str],
                      verify: Callable[[Sequence[str]], Collection[str]]) -> None:
    wanted = {m for m in batch.models if graph.nodes[m].resource_type == "model"}
    got = set(verify(selectors))
    if got != wanted:
        extra, missing = sorted(got - wanted), sorted(wanted - got)
        raise RescueError(f"batch {batch.index}: its selectors select {len(got)} model(s), "
                          f"not the batch's {len(wanted)}: extra {extra}, missing {missing}",
                          hint="this is a rescue-runner bug; please report it with the plan")
