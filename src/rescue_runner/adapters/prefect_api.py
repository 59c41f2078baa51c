"""Prefect behind one small interface: deploy, submit, read runs, snapshot the queue.

The only module besides ``flows/`` that imports prefect (imports happen inside
functions: ``import prefect`` costs about a second). Every call takes the API
URL explicitly and runs with ephemeral mode switched off, so a forgotten or
unreachable server is a ``RescueError`` at once, never a silent temporary
server. Calls retry on the SQLite server's "database is locked" and on 503.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from ..contention import ActiveRun, ContentionSnapshot, DueRun
from ..errors import DeploymentNotFound, PrefectUnreachable, RescueError, RunNotFound

T = TypeVar("T")

# The deployment runs the flow from the installed package: a module-path
# entrypoint without pull steps needs no Docker image, no remote storage and no
# path shared between the deploying machine and the worker.
FLOW_ENTRYPOINT = "rescue_runner.flows.transform_and_catalog.transform_and_catalog"
BUSY_STATES = ("RUNNING", "PENDING", "CANCELLING")
WORKER_HEARTBEAT_MAX_AGE = timedelta(seconds=90)
_HEALTH_TIMEOUT = 3.0
_RETRIES = 6


@dataclass(frozen=True)
class DeploymentInfo:
    """A deployment as the API returns it (the parts submission checks)."""

    id: str
    name: str
    flow_name: str
    work_pool: str | None
    work_queue: str | None
    parameters: Mapping[str, Any]
    parameter_names: frozenset[str]
    entrypoint: str | None
    parameter_schema: Mapping[str, Any] = field(default_factory=dict)
    job_env: Mapping[str, str] = field(default_factory=dict)  # env of its job variables (the worker's)


@dataclass(frozen=True)
class FlowRunInfo:
    """A flow run as the API returns it."""

    id: str
    name: str
    deployment_id: str | None
    parameters: Mapping[str, Any]
    tags: tuple[str, ...]
    state_type: str | None
    state_name: str | None
    state_message: str | None
    idempotency_key: str | None
    work_queue_name: str | None
    expected_start_time: datetime | None = None
    start_time: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.state_type in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass(frozen=True)
class DeployResult:
    """What ``deploy`` created or changed (``notes`` are human lines)."""

    deployment_id: str
    notes: tuple[str, ...] = field(default=())


# ---- plumbing ------------------------------------------------------------------------------

def check_api(api_url: str) -> None:
    """Raise RescueError unless ``<api_url>/health`` answers 200 within a few seconds."""
    import httpx

    url = api_url.rstrip("/") + "/health"
    try:
        resp = _health_client().get(url, timeout=_HEALTH_TIMEOUT)
    except httpx.HTTPError as exc:
        raise PrefectUnreachable(f"the Prefect API at {api_url} is unreachable ({type(exc).__name__}: {exc})",
                          hint="start the server or fix PREFECT_API_URL; unset it to run batches "
                          "in-process (embedded mode)") from exc
    if resp.status_code != 200:
        raise PrefectUnreachable(
            f"the Prefect API at {api_url} is not healthy (HTTP {resp.status_code} on /health)",
            hint="check the server; PREFECT_API_URL must end in /api")


# One client per API URL and thread, kept for the process: building a Prefect client (settings
# copy, TLS context) costs 0.1-0.3 s of CPU, and a runner pass makes a dozen calls.
_CLIENTS: dict[tuple[str, int], Any] = {}
_HEALTH: dict[int, Any] = {}


def _health_client() -> Any:
    import httpx

    key = threading.get_ident()
    if key not in _HEALTH:
        _HEALTH[key] = httpx.Client()
    return _HEALTH[key]


@contextlib.contextmanager
def _api_settings(api_url: str) -> Iterator[None]:
    """Prefect's settings pointed at ``api_url`` (never the temporary server) for the block; free
    when the environment already says so (the common case: PREFECT_API_URL is that URL)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE, temporary_settings

    if PREFECT_API_URL.value() == api_url:  # a set URL is used as is: ephemeral mode never starts
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False}):
        yield


@contextlib.contextmanager
def _client(api_url: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with _api_settings(api_url):
        try:
            key = (api_url, threading.get_ident())
            client = _CLIENTS.get(key)
            if client is None:
                client = get_client(sync_client=True)
                client.__enter__()
                _CLIENTS[key] = client
            yield client
        except RescueError:
            raise
        except Exception as exc:
            if _is_connect_error(exc):
                raise PrefectUnreachable(f"lost the Prefect API at {api_url}: {exc}",
                                  hint="check the server and PREFECT_API_URL") from exc
            raise


def _is_connect_error(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, httpx.TransportError)


def _transient(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status in (429, 502, 503):
        return True
    text = str(exc)
    if response is not None:
        with contextlib.suppress(Exception):
            text += response.text
    return "database is locked" in text


def _retry(fn: Callable[[], T]) -> T:
    """Call ``fn``, retrying the SQLite server's transient failures with backoff."""
    for attempt in range(_RETRIES):
        try:
            return fn()
        except Exception as exc:
            if attempt == _RETRIES - 1 or not _transient(exc):
                raise
            time.sleep(min(4.0, 0.25 * 2**attempt))
    raise AssertionError("unreachable")


def _not_found(exc: BaseException) -> bool:
    from prefect.exceptions import ObjectNotFound

    return isinstance(exc, ObjectNotFound)


# ---- deploy --------------------------------------------------------------------------------

def deploy(
    api_url: str,
    *,
    work_pool: str,
    work_queue: str,
    queue_concurrency: int,
    flow: Any,
    flow_name: str,
    deployment: str,
    parameters: Mapping[str, Any],
    job_variables: Mapping[str, Any] | None = None,
    description: str = "",
    version: str | None = None,
    heartbeat_seconds: int | None = None,
    crash_after_seconds: float | None = None,
) -> DeployResult:
    """Create or update the process work pool, the queue (with its limit) and the deployment.

    Idempotent: a second call with the same arguments changes nothing and keeps the
    deployment id (Prefect upserts deployments by flow and name). An existing pool of
    another type is left alone and reported. ``heartbeat_seconds`` switches on flow-run
    heartbeats for the deployment's runs (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` in the job
    variables' env); with ``crash_after_seconds`` too, the automation of
    ``ensure_crash_automation`` marks its runs CRASHED when their heartbeats stop.
    """
    check_api(api_url)
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.utilities.callables import parameter_schema
    from prefect.workers.process import ProcessWorker

    if flow_name != flow.name:
        raise RescueError(f"prefect.flow is {flow_name!r}, but the packaged flow is {flow.name!r}",
                          hint=f"set prefect.flow: {flow.name} in rescue.yaml")
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    unknown = sorted(set(parameters) - set(schema.get("properties", {})))
    if unknown:
        raise RescueError(f"deployment parameters {unknown} are not parameters of flow {flow.name}")
    notes: list[str] = []
    job_variables = dict(job_variables or {})
    if heartbeat_seconds is not None:
        job_variables["env"] = {**dict(job_variables.get("env") or {}),
                                HEARTBEAT_ENV: str(int(heartbeat_seconds))}
    with _client(api_url) as client:
        try:
            pool = _retry(lambda: client.read_work_pool(work_pool))
            notes.append(f"work pool {work_pool} exists (type {pool.type})")
            if pool.type != "process":
                notes.append(f"work pool {work_pool} is not a process pool; left unchanged")
        except Exception as exc:
            if not _not_found(exc):
                raise
            template = ProcessWorker.get_default_base_job_template()
            _retry(lambda: client.create_work_pool(
                WorkPoolCreate(name=work_pool, type="process", base_job_template=template), overwrite=True))
            notes.append(f"created process work pool {work_pool}")

        try:
            queue = _retry(lambda: client.read_work_queue_by_name(work_queue, work_pool_name=work_pool))
            if queue.concurrency_limit != queue_concurrency:
                _retry(lambda: client.update_work_queue(queue.id, concurrency_limit=queue_concurrency))
                notes.append(f"work queue {work_queue}: concurrency limit "
                             f"{queue.concurrency_limit} -> {queue_concurrency}")
            else:
                notes.append(f"work queue {work_queue} exists (limit {queue_concurrency})")
        except Exception as exc:
            if not _not_found(exc):
                raise
            _retry(lambda: client.create_work_queue(name=work_queue, work_pool_name=work_pool,
                                                    concurrency_limit=queue_concurrency))
            notes.append(f"created work queue {work_queue} (limit {queue_concurrency})")

        full_name = f"{flow_name}/{deployment}"
        existed = True
        try:
            _retry(lambda: client.read_deployment_by_name(full_name))
        except Exception as exc:
            if not _not_found(exc):
                raise
            existed = False
        flow_id = _retry(lambda: client.create_flow_from_name(flow_name))
        deployment_id = _retry(lambda: client.create_deployment(
            flow_id=flow_id,
            name=deployment,
            version=version,
            description=description,
            work_pool_name=work_pool,
            work_queue_name=work_queue,
            entrypoint=FLOW_ENTRYPOINT,
            path=None,
            pull_steps=[],
            parameters=dict(parameters),
            parameter_openapi_schema=schema,
            enforce_parameter_schema=True,
            job_variables=job_variables,
            tags=["rescue"],
            paused=False,
        ))
        notes.append(f"{'updated' if existed else 'created'} deployment {full_name} ({deployment_id})")
        if heartbeat_seconds is not None and crash_after_seconds is not None:
            notes.append(ensure_crash_automation(client, full_name, str(deployment_id),
                                                 heartbeat_seconds=heartbeat_seconds,
                                                 crash_after_seconds=crash_after_seconds))
    return DeployResult(deployment_id=str(deployment_id), notes=tuple(notes))


HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
# A run has ended (or is ending) when one of these arrives; otherwise a heartbeat is expected.
_END_EVENTS = ("prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Crashed",
               "prefect.flow-run.Cancelled", "prefect.flow-run.Cancelling", "prefect.flow-run.Paused",
               "prefect.flow-run.Suspended")


def crash_automation_name(full_name: str) -> str:
    """The automation ``rescue deploy`` keeps for one deployment (``<flow>/<deployment>``)."""
    return f"rescue: crash {full_name} runs without heartbeats"


def ensure_crash_automation(client: Any, full_name: str, deployment_id: str, *, heartbeat_seconds: int,
                            crash_after_seconds: float) -> str:
    """Create or update the automation that marks the deployment's silent runs CRASHED.

    Prefect's documented zombie-run detection: once a run of this deployment is running (or
    has sent a heartbeat), a heartbeat or an end state is expected within
    ``crash_after_seconds``; when none comes (the flow process and its worker died), the
    server sets the run CRASHED, which frees its queue slot. Scoped to this deployment, so
    other flows on the same server are never touched. Returns a note for the report.
    """
    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    name = crash_automation_name(full_name)
    within = timedelta(seconds=max(float(crash_after_seconds), heartbeat_seconds * 1.5))
    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
        expect={"prefect.flow-run.heartbeat", *_END_EVENTS},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}",
                       "prefect.resource.role": "deployment"},
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=within,
    )
    action = ChangeFlowRunState(
        state=StateType.CRASHED, name="Crashed", force=False,
        message=f"rescue-runner: no heartbeat for {within.total_seconds():g} s (heartbeats every "
                f"{heartbeat_seconds} s); the flow-run process and its worker are presumed dead")
    wanted = AutomationCore(name=name, description=f"Marks runs of {full_name} CRASHED when their "
                            "heartbeats stop (created by `rescue deploy`).",
                            enabled=True, trigger=trigger, actions=[action])
    existing = _retry(lambda: client.read_automations_by_name(name))
    if existing:
        first, *extra = existing
        _retry(lambda: client.update_automation(first.id, wanted))
        for dup in extra:
            _delete_automation(client, dup.id)
        return f"updated automation {name!r} (CRASHED after {within.total_seconds():g} s without heartbeat)"
    _retry(lambda: client.create_automation(wanted))
    return f"created automation {name!r} (CRASHED after {within.total_seconds():g} s without heartbeat)"


def _delete_automation(client: Any, automation_id: Any) -> None:
    _retry(lambda: client.delete_automation(automation_id))


def read_crash_automation(api_url: str, full_name: str) -> Any | None:
    """The deployment's crash automation, or None (``rescue doctor``, tests)."""
    with _client(api_url) as client:
        found = _retry(lambda: client.read_automations_by_name(crash_automation_name(full_name)))
    return found[0] if found else None


# ---- deployments and runs ------------------------------------------------------------------

def read_deployment(api_url: str, full_name: str) -> DeploymentInfo:
    """The deployment ``<flow>/<deployment>``; RescueError when it does not exist."""
    check_api(api_url)
    with _client(api_url) as client:
        try:
            d = _retry(lambda: client.read_deployment_by_name(full_name))
        except Exception as exc:
            if _not_found(exc):
                raise DeploymentNotFound(f"deployment {full_name} not found at {api_url}",
                                  hint="run `rescue deploy` first") from exc
            raise
    props = (d.parameter_openapi_schema or {}).get("properties") or {}
    return DeploymentInfo(
        id=str(d.id), name=d.name, flow_name=full_name.split("/", 1)[0],
        work_pool=d.work_pool_name, work_queue=d.work_queue_name,
        parameters=dict(d.parameters or {}), parameter_names=frozenset(props),
        entrypoint=d.entrypoint, parameter_schema=dict(d.parameter_openapi_schema or {}),
        job_env={str(k): str(v) for k, v in ((d.job_variables or {}).get("env") or {}).items()},
    )


def submit(
    api_url: str,
    *,
    deployment: DeploymentInfo,
    parameters: Mapping[str, Any],
    name: str,
    tags: Sequence[str],
    idempotency_key: str,
) -> FlowRunInfo:
    """Create one flow run of ``deployment`` (returns at once, timeout=0).

    Prefect returns the existing run when the idempotency key was used before in the
    same *flow*; the caller must compare the returned run with what it asked for.
    """
    from prefect.deployments import run_deployment

    with _client(api_url):
        run = _retry(lambda: run_deployment(
            deployment.id, parameters=dict(parameters), flow_run_name=name, timeout=0,
            tags=list(tags), idempotency_key=idempotency_key, as_subflow=False,
        ))
    return _run_info(run)


def read_flow_run(api_url: str, flow_run_id: str) -> FlowRunInfo:
    """The flow run with its current state."""
    from uuid import UUID

    with _client(api_url) as client:
        try:
            run = _retry(lambda: client.read_flow_run(UUID(flow_run_id)))
        except Exception as exc:
            if _not_found(exc):
                raise RunNotFound(f"flow run {flow_run_id} not found at {api_url}") from exc
            raise
    return _run_info(run)


def cancel_flow_run(api_url: str, flow_run_id: str, *, message: str, timeout: float = 60.0,
                    poll_seconds: float = 1.0) -> FlowRunInfo:
    """Cancel a flow run the way the UI does; return it once final (or as it is after ``timeout``).

    A run not started yet (SCHEDULED, PENDING, PAUSED) becomes CANCELLED at once. A RUNNING
    run becomes CANCELLING: its worker kills the flow process and reports CANCELLED. A final
    run is left as it is.
    """
    from uuid import UUID

    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    info = read_flow_run(api_url, flow_run_id)
    if info.is_final:
        return info
    target = StateType.CANCELLING if info.state_type in ("RUNNING", "CANCELLING") else StateType.CANCELLED
    with _client(api_url) as client:
        _retry(lambda: client.set_flow_run_state(
            UUID(flow_run_id), State(type=target, name=target.value.title(), message=message), force=True))
    return wait_for_flow_run(api_url, flow_run_id, timeout=timeout, poll_seconds=poll_seconds)


def read_flow_runs_by_tag(api_url: str, tag: str) -> tuple[FlowRunInfo, ...]:
    """All flow runs carrying ``tag`` (e.g. ``rescue:<id>``), oldest first."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    with _client(api_url) as client:
        runs = _retry(lambda: client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200))
    return tuple(_run_info(r) for r in runs)


def wait_for_flow_run(api_url: str, flow_run_id: str, *, timeout: float,
                      poll_seconds: float = 1.0) -> FlowRunInfo:
    """Poll until the run is in a final state or ``timeout`` passes (then return it as is)."""
    deadline = time.monotonic() + timeout
    while True:
        info = read_flow_run(api_url, flow_run_id)
        if info.is_final or time.monotonic() >= deadline:
            return info
        time.sleep(poll_seconds)


def _run_info(run: Any) -> FlowRunInfo:
    state = run.state
    return FlowRunInfo(
        id=str(run.id),
        name=run.name,
        deployment_id=str(run.deployment_id) if run.deployment_id else None,
        parameters=dict(run.parameters or {}),
        tags=tuple(run.tags or ()),
        state_type=state.type.value if state else None,
        state_name=state.name if state else None,
        state_message=state.message if state else None,
        idempotency_key=run.idempotency_key,
        work_queue_name=run.work_queue_name,
        expected_start_time=run.expected_start_time,
        start_time=_aware(run.start_time) if run.start_time else None,
    )


# ---- contention ----------------------------------------------------------------------------

def contention_snapshot(api_url: str, *, work_pool: str, work_queue: str, lookahead_minutes: int,
                        now: datetime | None = None, horizon_minutes: float | None = None,
                        history_runs: int = 10) -> ContentionSnapshot:
    """What the forecast needs about one pool and queue, in seven reads.

    Busy runs of the pool (with start times, queues and deployments), scheduled runs of the
    pool expected before ``now`` + the look-ahead (or ``horizon_minutes`` when longer), the
    names of their deployments, the recent completed runs of those deployments (the median
    of the last ``history_runs`` per deployment is its typical duration), the pool's and the
    queue's limits and the pool's live workers. Reads only: never ``get_runs_in_work_queue``,
    which counts as a worker poll.
    """
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    check_api(api_url)
    now = now or datetime.now(UTC)
    ahead = max(float(lookahead_minutes), horizon_minutes or 0.0)
    horizon = now + timedelta(minutes=ahead)

    def of_type(*types: str) -> FlowRunFilterState:
        return FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(t) for t in types]))

    with _client(api_url) as client:
        try:
            pool = _retry(lambda: client.read_work_pool(work_pool))
            queue = _retry(lambda: client.read_work_queue_by_name(work_queue, work_pool_name=work_pool))
        except Exception as exc:
            if _not_found(exc):
                raise RescueError(f"work pool {work_pool} / queue {work_queue} not found at {api_url}",
                                  hint="run `rescue deploy` first") from exc
            raise
        in_pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[work_pool]))
        busy_runs = _retry(lambda: client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=of_type(*BUSY_STATES)), work_pool_filter=in_pool, limit=200))
        # "Late" runs are still of type SCHEDULED: filter on the type, not the name.
        due_runs = _retry(lambda: client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=of_type("SCHEDULED"),
                expected_start_time=FlowRunFilterExpectedStartTime(before_=cast(Any, horizon))),
            work_pool_filter=in_pool, sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200))
        dep_ids = sorted({r.deployment_id for r in (*busy_runs, *due_runs) if r.deployment_id}, key=str)
        names: dict[Any, str] = {}
        done: list[Any] = []
        if dep_ids:
            deps = _retry(lambda: client.read_deployments(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=dep_ids))))
            names = {d.id: d.name for d in deps}
            done = _retry(lambda: client.read_flow_runs(
                flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=dep_ids),
                                              state=of_type("COMPLETED")),
                sort=FlowRunSort.END_TIME_DESC, limit=min(200, history_runs * len(dep_ids) * 3)))
        workers = _retry(lambda: client.read_workers_for_work_pool(work_pool))
    online = sum(1 for w in workers if _online(w, now))

    def other(run: Any) -> str | None:
        return None if run.work_queue_name == work_queue else (run.work_queue_name or "?")

    running = tuple(
        ActiveRun(name=r.name, deployment=names.get(r.deployment_id),
                  started=_aware(r.start_time) if r.start_time else None, work_queue=other(r))
        for r in busy_runs)
    due = tuple(
        DueRun(name=r.name, deployment=names.get(r.deployment_id),
               expected_start=_aware(r.expected_start_time or now),
               state_name=r.state.name if r.state else "Scheduled", work_queue=other(r))
        for r in due_runs)
    return ContentionSnapshot(
        work_pool=work_pool, work_queue=work_queue,
        queue_limit=queue.concurrency_limit, pool_limit=pool.concurrency_limit,
        queue_busy=sum(1 for r in running if r.work_queue is None), pool_busy=len(running),
        due=due, workers_online=online, taken_at=now, lookahead_minutes=lookahead_minutes,
        queue_paused=bool(queue.is_paused), pool_paused=bool(getattr(pool, "is_paused", False)),
        running=running, typical_seconds=typical_durations(done, names, history_runs),
    )


def typical_durations(runs: Sequence[Any], names: Mapping[Any, str], keep: int) -> dict[str, float]:
    """Median wall time of the latest ``keep`` completed runs per deployment name."""
    import statistics

    seen: dict[str, list[float]] = {}
    for r in runs:
        name = names.get(r.deployment_id)
        if name is None or r.start_time is None or r.end_time is None:
            continue
        took = seen.setdefault(name, [])
        if len(took) < keep:
            took.append((_aware(r.end_time) - _aware(r.start_time)).total_seconds())
    return {name: statistics.median(took) for name, took in seen.items() if took}


def _online(worker: Any, now: datetime) -> bool:
    status = getattr(getattr(worker, "status", None), "value", getattr(worker, "status", None))
    beat = worker.last_heartbeat_time
    return status == "ONLINE" and beat is not None and now - _aware(beat) <= WORKER_HEARTBEAT_MAX_AGE


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt
