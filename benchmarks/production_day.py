"""A compressed production day on a real Prefect server (issue 12): does rescue-runner finish every
rescue inside its window without delaying the scheduled work?

The day: 21:00-01:30 Europe/Berlin on one work queue (limit 5) shared by six scheduled
deployments (24 runs of a sleep flow) and four rescue requests merged on a bare git remote
during the evening (a hotfix, an outage recovery, a backfill and a heavy full refresh). Time
is compressed: one simulated minute lasts ``--scale`` real seconds (default 4), and every
duration (sleeps, windows, pauses, margins, history) is scaled by the same factor, so the
rescue-runner under test runs on the real clock with nothing faked. What is not scaled is
Prefect's own cost of starting a flow run (a worker poll, two Python processes importing
Prefect: 5-20 real seconds on two loaded cores); the lower the scale, the more of the day that
fixed cost eats (at 2 s per simulated minute a 10-minute run started 5-10 minutes late even
on an empty queue). The Prefect server runs on PostgreSQL, as in production (``--database
sqlite`` for Prefect's default, which serialises writes and answers "database is locked" for
up to a minute with three pools and workers). Three days run side by
side on the same server, each on its own work pool (queue ``dbt``, limit 5) with its own
process worker:

* ``control``: the scheduled runs alone;
* ``naive``: every rescue batch is triggered as soon as it can be (at merge, then batch after
  batch), ignoring the queue and the request's window;
* ``rescue``: rescue-runner's own ``Runner`` (the code of ``rescue apply``), one pass per tick
  as cron would, in a separate process, against the git remote and the Prefect server.

Rescue batches are real ``dbt build`` flow runs of the rescue deployment on a generated
benchmark dbt project (DuckDB in memory, so concurrent batches never fight over a file). Its
models are made slow honestly: each is a dbt Python model that sleeps for its simulated
minutes (its refs are declared, not read). The
planner's estimates come from a run history written for those sleeps (as last week's
``run_results.json``); the scheduled deployments' typical durations from three completed
runs per deployment recorded on the server before the day (yesterday).

Printed per mode: scheduled-run lateness (total, max, runs later than 5 and 10 simulated
minutes) against the control day, ticks where a scheduled run waited on a full queue, and
per rescue its merge-to-done time, whether it finished inside its window, and its lower
bound (its batches' durations plus its pauses as if alone on an empty queue, from the
window's opening when it merged before). A batch's duration as if alone on an empty queue is
its flow run's start-to-end time plus the worker's start-up latency measured the same day (the
median lateness of the control day's runs, which never wait on a full queue). Before the day it
prints, per rescue, the room its window leaves by the schedule (the longest stretch with room
for its weight, reserve kept), so an impossible scenario shows as such. Not part of the test
suite.

    python benchmarks/production_day.py [--scale 4] [--keep] [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.prefect_server import (  # noqa: E402
    TELEMETRY_OFF,
    base_env,
    descendants,
    free_port,
    prefect_executable,
    stop_process,
    wait_healthy,
)
from support.rescue_repo import config as repo_config  # noqa: E402
from support.rescue_repo import make_repo  # noqa: E402

BERLIN = ZoneInfo("Europe/Berlin")
SIM_DAY = datetime(2026, 11, 23, 21, 0, tzinfo=BERLIN)  # the simulated evening starts here
SIM_END = SIM_DAY + timedelta(hours=4, minutes=30)  # 01:30
SETTLE_MINUTES = 30  # simulated minutes after 01:30 for runs to finish
LIMIT = 5
MODES = ("control", "naive", "rescue")
DEPLOYMENT = "bench_rescue"
# Server services this day does not use (no cron schedules, no automations); each writes to SQLite,
# which on a loaded machine means "database is locked". Late runs are measured from start times.
QUIET = {
    "PREFECT_API_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_API_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_API_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_API_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_API_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

# Six scheduled deployments: simulated minutes each run takes, and when they start (Berlin). 24 runs.
SCHEDULE: dict[str, tuple[int, tuple[str, ...]]] = {
    "orders_hourly": (10, ("21:00", "22:00", "23:00", "00:00", "01:00")),
    "finance_hourly": (15, ("21:20", "22:20", "23:20", "00:20", "01:20")),
    "events_hourly": (8, ("21:40", "22:40", "23:40", "00:40")),
    "snapshots": (12, ("21:30", "22:30", "23:30", "00:30", "01:30")),
    "marketing_daily": (25, ("22:00", "00:00", "01:00")),
    "nightly_marts": (40, ("23:00", "00:10")),
}

# The benchmark project: model -> (simulated minutes, upstream models, heavy).
MODELS: dict[str, tuple[int, tuple[str, ...], bool]] = {
    "stg_orders": (3, (), False),
    "stg_events": (3, (), False),
    "stg_customers": (3, (), False),
    "int_orders": (4, ("stg_orders",), False),
    "int_events": (4, ("stg_events",), False),
    "mart_revenue": (5, ("int_orders",), False),
    "mart_customers": (5, ("int_orders", "stg_customers"), False),
    "mart_events": (5, ("int_events",), False),
    "mart_funnel": (5, ("int_events",), False),
    "mart_ltv": (6, ("stg_customers",), False),
    "fct_history": (40, ("stg_orders",), True),
}


@dataclass(frozen=True)
class Rescue:
    rid: str
    merged: str  # Berlin clock time of the merge
    select: str
    window: tuple[str, str]  # Berlin clock times: not_before, not_after (the latest end we accept)
    max_models: int
    pause: int = 0  # simulated minutes
    full_refresh: bool = False


RESCUES = (
    # Planned for the evening's quieter stretch: by the schedule, a heavy batch (two slots, one
    # reserved) has 60 minutes of room from 22:30 and at most 48 minutes after 23:30.
    Rescue("heavy-full-refresh", "21:20", "fct_history", ("22:30", "01:30"), 1, full_refresh=True),
    Rescue("hotfix", "21:35", "int_orders+", ("21:30", "23:30"), 1, pause=2),
    Rescue("outage-recovery", "22:05", "stg_events+", ("22:00", "01:30"), 2),
    Rescue("backfill", "22:40", "stg_customers mart_ltv", ("22:30", "01:30"), 1, pause=1),
)


# The rescue mode's rescue.yaml: prefect.reserve_slots, heavy_extra_slots, forecast margins
# (minutes simulated).
RESERVE, HEAVY_EXTRA, MARGIN, MARGIN_PERCENT = 1, 1, 8, 20


def evening_minutes(hhmm: str) -> int:
    """Minutes from 21:00 to a Berlin clock time of the evening (after midnight: the next day)."""
    h, m = map(int, hhmm.split(":"))
    return (h * 60 + m - SIM_DAY.hour * 60) % (24 * 60)


def room_by_schedule(r: Rescue) -> tuple[int, int]:
    """(longest stretch in minutes inside the rescue's window where the scheduled runs leave room
    for its batch, the batch's need with the margin): the scenario is feasible when the first is
    at least the second."""
    weight = 1 + HEAVY_EXTRA if any(MODELS[m][2] for m in r.select.split() if m in MODELS) else 1
    busy = [(evening_minutes(t), evening_minutes(t) + d) for d, starts in SCHEDULE.values() for t in starts]
    lo, hi = evening_minutes(r.window[0]), evening_minutes(r.window[1])
    best = run = 0
    for t in range(lo, hi):
        run = run + 1 if sum(s <= t < e for s, e in busy) + weight <= LIMIT - RESERVE else 0
        best = max(best, run)
    longest = max(MODELS[m][0] for m in r.select.split() if m in MODELS) if r.select in MODELS else 0
    need = longest + max(MARGIN, round(longest * MARGIN_PERCENT / 100)) if longest else 0
    return best, need


@dataclass
class Clock:
    """Simulated Berlin time <-> real UTC instants; ``scale`` real seconds per simulated minute."""

    real0: datetime
    scale: float

    def real(self, hhmm: str | datetime) -> datetime:
        return self.real0 + timedelta(seconds=self.sim_minutes(hhmm) * self.scale)

    def sim_minutes(self, hhmm: str | datetime) -> float:
        if isinstance(hhmm, datetime):
            return (hhmm - self.real0).total_seconds() / self.scale
        return evening_minutes(hhmm)

    def label(self, real: datetime) -> str:
        return (SIM_DAY + timedelta(minutes=self.sim_minutes(real))).strftime("%H:%M")

    def minutes(self, real_seconds: float) -> float:
        return real_seconds / self.scale


# ---- the benchmark dbt project ------------------------------------------------------------


def write_project(dest: Path, scale: float) -> None:
    """A dbt project whose models sleep their simulated minutes (in real seconds)."""
    (dest / "models").mkdir(parents=True)
    (dest / "dbt_project.yml").write_text(
        textwrap.dedent("""\
        name: bench
        version: "1.0"
        profile: bench
        model-paths: [models]
        models:
          bench:
            +materialized: table
        """)
    )
    (dest / "profiles.yml").write_text(
        textwrap.dedent("""\
        bench:
          target: dev
          outputs:
            dev:
              type: duckdb
              path: ":memory:"
              threads: 1
        """)
    )
    for name, (minutes, parents, heavy) in MODELS.items():
        # dbt reads refs from the model's code without running them: lineage without reading tables.
        refs = "".join(f"        dbt.ref({p!r})\n" for p in parents)
        meta = ', meta={"rescue": {"heavy": True}}' if heavy else ""
        (dest / "models" / f"{name}.py").write_text(
            "import time\n\n\n"
            "def model(dbt, session):\n"
            f'    dbt.config(materialized="table"{meta})\n'
            + (f"    if False:\n{refs}" if parents else "")
            + f"    time.sleep({minutes * scale:.3f})\n"
            f'    return session.sql("select {minutes} as sim_minutes")\n'
        )


def write_history(dest: Path, scale: float) -> None:
    """Last week's run_results.json: each model took its sleep (what the planner estimates from)."""
    dest.mkdir(parents=True, exist_ok=True)
    for day in range(3):
        results = [
            {
                "unique_id": f"model.bench.{m}",
                "status": "success",
                "execution_time": minutes * scale + 0.3,
                "timing": [],
                "thread_id": "Thread-1",
                "adapter_response": {},
                "message": "OK",
                "failures": None,
            }
            for m, (minutes, _, _) in MODELS.items()
        ]
        doc = {
            "metadata": {
                "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
                "dbt_version": "1.11.0",
                "generated_at": f"2026-11-1{day}T22:00:00Z",
                "invocation_id": f"bench-{day}",
            },
            "results": results,
            "elapsed_time": 1.0,
            "args": {},
        }
        (dest / f"run_results_{day}.json").write_text(json.dumps(doc))


SLEEP_FLOW = """
import time

from prefect import flow


@flow(log_prints=False)
def sleep_for(seconds: float) -> None:
    time.sleep(seconds)
"""


# ---- Prefect: server, workers, scheduled deployments ----------------------------------------


@contextlib.contextmanager
def server_database(kind: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The Prefect server's database: PostgreSQL (as production runs Prefect; a fresh cluster on
    127.0.0.1) or SQLite (Prefect's default, which serialises every write: with three pools,
    three workers and a few dozen runs it answers "database is locked" for up to a minute)."""
    if kind == "sqlite":
        yield "SQLite", {}
        return
    from support.postgres_server import running_postgres

    with running_postgres() as pg:
        pg.create_database("prefect")
        url = f"postgresql+asyncpg://{pg.user}@{pg.host}:{pg.port}/prefect"
        yield "PostgreSQL", {"PREFECT_API_DATABASE_CONNECTION_URL": url}


@contextlib.contextmanager
def prefect_server(root: Path, database: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    home = root / "prefect-home"
    home.mkdir()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log_path = root / "server.log"
    env = base_env(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            **QUIET,
            **database,
        }
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_healthy(api_url, proc, log_path)
        yield api_url, base_env({"PREFECT_API_URL": api_url, "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"})
    finally:
        stop_process(proc)


def start_worker(pool: str, client_env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {**client_env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "0"}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                *prefect_executable(),
                "worker",
                "start",
                "--pool",
                pool,
                "--work-queue",
                "dbt",
                "--type",
                "process",
                "--name",
                f"worker-{pool}",
                "--limit",
                "20",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@contextlib.contextmanager
def client(api_url: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        yield c


def retry(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """The SQLite server answers 503 / "database is locked" under load: retry with backoff."""
    for attempt in range(8):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == 7 or not ("503" in str(exc) or "locked" in str(exc) or "429" in str(exc)):
                raise
            time.sleep(0.25 * 2**attempt)
    raise AssertionError("unreachable")


def deploy_day(api_url: str, pool: str, flow_dir: Path, scale: float) -> dict[str, Any]:
    """The six scheduled deployments on ``pool``/dbt (their runs come with ``schedule_day``)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    deps: dict[str, Any] = {}
    with client(api_url) as c:
        with contextlib.suppress(Exception):
            template = ProcessWorker.get_default_base_job_template()
            retry(c.create_work_pool, WorkPoolCreate(name=pool, type="process", base_job_template=template))
        with contextlib.suppress(Exception):
            retry(c.create_work_queue, name="dbt", work_pool_name=pool, concurrency_limit=LIMIT)
        flow_id = retry(c.create_flow_from_name, "sleep-for")
        schema = {"title": "Parameters", "type": "object", "properties": {"seconds": {"type": "number"}}}
        for name, (minutes, _) in SCHEDULE.items():
            deps[name] = retry(
                c.create_deployment,
                flow_id=flow_id,
                name=f"{name}_{pool.removeprefix('day-')}",
                work_pool_name=pool,
                work_queue_name="dbt",
                entrypoint="sleep_flow.py:sleep_for",
                pull_steps=[
                    {"prefect.deployments.steps.set_working_directory": {"directory": str(flow_dir)}}
                ],
                parameters={"seconds": minutes * scale},
                parameter_openapi_schema=schema,
            )
    return deps


def record_yesterday(api_url: str, deps: dict[str, Any], scale: float) -> None:
    """Yesterday's history on the server: one completed run per deployment, of its usual length."""
    from prefect.states import Completed, Running, Scheduled

    t0 = datetime.now(UTC) - timedelta(days=1)
    with client(api_url) as c:
        for name, (minutes, _) in SCHEDULE.items():
            run = retry(
                c.create_flow_run_from_deployment,
                deps[name],
                name=f"{name}-yesterday",
                state=Scheduled(scheduled_time=t0 + timedelta(days=30)),
            )
            retry(c.set_flow_run_state, run.id, Running(timestamp=t0), force=True)
            done = Completed(timestamp=t0 + timedelta(seconds=minutes * scale))
            retry(c.set_flow_run_state, run.id, done, force=True)


def schedule_day(api_url: str, modes: list[Mode], deps: dict[str, dict[str, Any]], clock: Clock) -> None:
    """Today's 24 scheduled runs per mode, created in the order they are due."""
    from prefect.states import Scheduled

    todo = sorted(
        (clock.real(hhmm), m.name, name, hhmm)
        for m in modes
        for name, (_, starts) in SCHEDULE.items()
        for hhmm in starts
    )
    by_name = {m.name: m for m in modes}

    def create(item: tuple[datetime, str, str, str]) -> tuple[str, str]:
        at, mode, name, hhmm = item
        with client(api_url) as c:
            run = retry(
                c.create_flow_run_from_deployment,
                deps[mode][name],
                name=f"{name}-{hhmm.replace(':', '')}",
                state=Scheduled(scheduled_time=at),
            )
        return mode, str(run.id)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for mode, run_id in pool.map(create, todo):
            by_name[mode].scheduled.append(run_id)


# ---- the day ---------------------------------------------------------------------------------


@dataclass
class Mode:
    name: str
    pool: str
    repo: Any = None
    worker: subprocess.Popen[bytes] | None = None
    driver: subprocess.Popen[bytes] | None = None
    scheduled: list[str] = field(default_factory=list)
    full_samples: int = 0
    samples: int = 0


def request_body(r: Rescue, clock: Clock, *, with_window: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "reason": f"benchmark rescue {r.rid}: rebuild after an incident",
        "requested_by": "bench",
        "ticket": "BENCH-1",
        "select": r.select,
        "batches": {"max_models": r.max_models, "pause_minutes": r.pause * clock.scale / 60},
    }
    if r.full_refresh:
        body["full_refresh"] = True
    if with_window:
        body["window"] = {
            "not_before": clock.real(r.window[0]).isoformat(),
            "not_after": clock.real(r.window[1]).isoformat(),
            "timezone": "Europe/Berlin",
        }
    return body


def setup_mode(
    mode: Mode, root: Path, api_url: str, client_env: dict[str, str], clock: Clock, plugin_dir: Path
) -> None:
    from rescue_runner import execution
    from rescue_runner.config import load_config

    project = root / "project"
    if not project.exists():
        write_project(project, clock.scale)
        write_history(project / "history", clock.scale)
    scale_min = clock.scale / 60  # real minutes per simulated minute
    cfg = repo_config(
        storage=root / mode.name / "runs",
        deployment=f"{DEPLOYMENT}_{mode.name}",
        work_pool=mode.pool,
        queue_concurrency=LIMIT,
        reserve_slots=RESERVE,
        heavy_extra_slots=HEAVY_EXTRA,
        lookahead_minutes=max(1, round(30 * scale_min)),
        forecast={
            "default_run_minutes": 10 * scale_min,
            "margin_percent": MARGIN_PERCENT,
            "margin_minutes": MARGIN * scale_min,
            "history_runs": 10,
            "horizon_hours": 6 * scale_min,
        },
    )
    cfg["dbt"] = {
        "project_dir": "lakehouse",
        "profiles_dir": "lakehouse",
        "target": "dev",
        "history_dir": "lakehouse/history",
    }
    cfg["policy"] = {"heavy": {"meta_key": "rescue.heavy"}}
    mode.repo = make_repo(root / mode.name / "repo", project, cfg, env={**os.environ, **client_env})
    if mode.name != "control":
        runner_cfg = load_config(mode.repo.runner / "rescue.yaml")
        execution.deploy(
            runner_cfg,
            api_url=api_url,
            job_variables={"env": {**TELEMETRY_OFF}},
        )


def driver(mode: str, runner_clone: Path, until: float, log_path: Path, tick: float) -> None:
    """One mode's runner process: a pass every ``tick`` (one simulated minute, as cron would) until
    ``until`` (epoch seconds)."""
    from rescue_runner.adapters.git_audit import GitLock, new_holder_id
    from rescue_runner.contention import Decision
    from rescue_runner.executors import make_executor
    from rescue_runner.operate import wire
    from rescue_runner.revalidation import BranchValidator
    from rescue_runner.runner import Runner, SystemClock

    log = log_path.open("a")

    def say(line: str) -> None:
        log.write(f"{datetime.now(UTC):%H:%M:%S} {line}\n")
        log.flush()

    clock = SystemClock()
    holder = new_holder_id()
    w = wire(runner_clone / "rescue.yaml", runner_clone, clock=clock, holder=holder, say=say)
    lock = GitLock(w.remote, "default", lease_seconds=120, holder=holder)

    class Naive:
        """The real executor, but every batch goes at once: no look at the queue."""

        def __init__(self) -> None:
            self.inner = make_executor(w.source.config())
            self.mode, self.lookup_before_submit = self.inner.mode, self.inner.lookup_before_submit

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def contention(self, ask: Any) -> Decision:
            return Decision(True, ("go: naive mode triggers at once",))

    runner = Runner(
        store=w.store,
        source=w.source,
        lock=lock,
        make_validator=lambda: BranchValidator(w.source.config),
        make_executor=(Naive if mode == "naive" else lambda: make_executor(w.source.config())),
        clock=clock,
        say=say,
    )
    while time.time() < until:
        t = time.monotonic()
        try:
            runner.apply()
        except Exception as exc:  # keep ticking, as cron would; the log says what happened
            say(f"apply failed: {type(exc).__name__}: {exc}")
        time.sleep(max(0.2, tick - (time.monotonic() - t)))


def sample(api_url: str, modes: list[Mode], now: datetime) -> None:
    """One tick: per pool, is the queue full while a scheduled run is due?"""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    with client(api_url) as c:
        for m in modes:
            pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[m.pool]))
            busy = retry(
                c.count_flow_runs,
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                    )
                ),
                work_pool_filter=pool,
            )
            due = retry(
                c.read_flow_runs,
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
                work_pool_filter=pool,
                limit=50,
            )
            waiting = [
                r
                for r in due
                if str(r.id) in set(m.scheduled)
                and r.expected_start_time
                and r.expected_start_time <= now - timedelta(seconds=2)
            ]
            m.samples += 1
            if busy >= LIMIT and waiting:
                m.full_samples += 1


def run_day(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    plugin_dir = root / "plugin"
    plugin_dir.mkdir()
    flow_dir = root / "flows"
    flow_dir.mkdir()
    (flow_dir / "sleep_flow.py").write_text(SLEEP_FLOW)
    modes = [Mode(name, f"day-{name}") for name in args.modes]
    with server_database(args.database) as (db_name, database), \
            prefect_server(root, database) as (api_url, client_env):
        print(f"Prefect server on {db_name}", flush=True)
        os.environ.update({"PREFECT_API_URL": api_url, **TELEMETRY_OFF})
        setup_started = time.monotonic()
        deps = {}
        for m in modes:
            setup_mode(m, root, api_url, client_env, Clock(datetime.now(UTC), args.scale), plugin_dir)
            deps[m.name] = deploy_day(api_url, m.pool, flow_dir, args.scale)
        if "rescue" in deps:  # only rescue-runner reads the history
            record_yesterday(api_url, deps["rescue"], args.scale)
        print(f"setup took {time.monotonic() - setup_started:.0f} s", flush=True)
        for r in RESCUES:
            room, need = room_by_schedule(r)
            print(f"  {r.rid}: window {r.window[0]}-{r.window[1]}, by the schedule the longest stretch with "
                  f"room for its batches is {room} min" + (f" (its batch needs {need} with the margin)"
                                                             if need else ""), flush=True)
        try:
            # The evening starts after the day's runs are created (in the order they are due), then
            # the workers start polling.
            clock = Clock(datetime.now(UTC) + timedelta(seconds=args.lead), args.scale)
            schedule_day(api_url, modes, deps, clock)
            for m in modes:
                m.worker = start_worker(
                    m.pool, {**client_env, **TELEMETRY_OFF}, root / f"worker-{m.name}.log"
                )
            print(
                f"scheduled runs created and workers started "
                f"{(datetime.now(UTC) - clock.real0).total_seconds():+.0f} s from the start of the evening",
                flush=True,
            )
            return day(args, root, api_url, client_env, clock, modes)
        finally:
            for m in modes:
                if m.driver is not None and m.driver.poll() is None:
                    stop_process(m.driver)
                if m.worker is not None and m.worker.poll() is None:
                    stop_worker(m.worker)


def day(
    args: argparse.Namespace,
    root: Path,
    api_url: str,
    client_env: dict[str, str],
    clock: Clock,
    modes: list[Mode],
) -> dict[str, Any]:
    print(f"the evening starts at {clock.real0:%H:%M:%S} UTC (21:00 simulated)", flush=True)
    end = clock.real("01:30") + timedelta(seconds=SETTLE_MINUTES * args.scale)
    try:
        for m in modes:
            if m.name in ("naive", "rescue"):
                log = root / f"driver-{m.name}.log"
                m.driver = subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--driver",
                        m.name,
                        "--runner-clone",
                        str(m.repo.runner),
                        "--until",
                        str(end.timestamp()),
                        "--log",
                        str(log),
                        "--scale",
                        str(args.scale),
                    ],
                    env={
                        **os.environ,
                        **client_env,
                        **TELEMETRY_OFF,
                    },
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=(root / f"driver-{m.name}.err").open("wb"),
                )
        merges = sorted((clock.real(r.merged), r) for r in RESCUES)
        merged_at: dict[tuple[str, str], datetime] = {}
        while datetime.now(UTC) < end:
            now = datetime.now(UTC)
            while merges and merges[0][0] <= now:
                _, r = merges.pop(0)
                for m in modes:
                    if m.name != "control":
                        m.repo.merge_request(r.rid, request_body(r, clock, with_window=m.name == "rescue"))
                        merged_at[(m.name, r.rid)] = datetime.now(UTC)
                print(f"  {clock.label(now)} merged {r.rid}", flush=True)
            if clock.real0 <= now <= clock.real("01:30"):
                try:
                    sample(api_url, modes, now)
                except Exception as exc:  # a missed sample is reported, never fatal
                    print(f"  sample failed: {type(exc).__name__}: {exc}", flush=True)
            time.sleep(max(0.1, args.scale - (datetime.now(UTC) - now).total_seconds()))
    finally:
        for m in modes:
            if m.driver is not None:
                stop_process(m.driver)
    results = collect(api_url, modes, clock, merged_at)
    for m in modes:
        if m.worker is not None:
            stop_worker(m.worker)
    return results


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Stop a worker and the flow-run processes it started (they run in sessions of their own, so
    stopping the worker's process group leaves them running)."""
    import signal

    below = descendants(worker.pid)
    stop_process(worker)
    for pid in below:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def pool_filter(pool: str) -> Any:
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    return WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))


def collect(
    api_url: str, modes: list[Mode], clock: Clock, merged_at: dict[tuple[str, str], datetime]
) -> dict[str, Any]:
    from uuid import UUID

    from rescue_runner import audit, execution

    out: dict[str, Any] = {}
    with client(api_url) as c:
        lateness: dict[str, list[float]] = {}
        for m in modes:
            late = lateness[m.name] = []
            for rid in m.scheduled:
                run = retry(c.read_flow_run, UUID(rid))
                start = run.start_time or datetime.now(UTC)
                late.append(max(0.0, clock.minutes((start - run.expected_start_time).total_seconds())))
        # What starting a run costs on an empty queue today: the control day's median lateness.
        pickup = statistics.median(lateness["control"]) if "control" in lateness else 0.0
        out["pickup_minutes"] = pickup
        for m in modes:
            late = lateness[m.name]
            rescues: dict[str, Any] = {}
            if m.name != "control":
                trail = m.repo.audit_events()
                for r in RESCUES:
                    mine = audit.order(e for e in trail if e.request_id == r.rid)
                    done = next((e for e in mine if e.type == audit.REQUEST_FINISHED), None)
                    runs = [
                        x
                        for x in c.read_flow_runs(work_pool_filter=pool_filter(m.pool), limit=200)
                        if execution.run_tag(r.rid) in (x.tags or [])
                    ]
                    took = [
                        clock.minutes((x.end_time - x.start_time).total_seconds())
                        for x in runs
                        if x.start_time and x.end_time
                    ]
                    merged = merged_at.get((m.name, r.rid))
                    opens = clock.real(r.window[0])
                    lower = None
                    if merged is not None and took and len(took) == len(runs):
                        lower = (
                            clock.minutes(max(0.0, (opens - merged).total_seconds()))
                            + sum(took)
                            + pickup * len(took)
                            + r.pause * (len(took) - 1)
                        )
                    finished = done.at if done is not None else None
                    rescues[r.rid] = {
                        "outcome": done.fields.get("outcome") if done else "unfinished",
                        "merged": clock.label(merged) if merged else None,
                        "done": clock.label(finished) if finished else None,
                        "merge_to_done": clock.minutes((finished - merged).total_seconds())
                        if finished and merged
                        else None,
                        "in_window": bool(
                            finished
                            and clock.real(r.window[0]) <= finished <= clock.real(r.window[1])
                            and all(x.start_time >= clock.real(r.window[0]) for x in runs if x.start_time)
                        ),
                        "lower_bound": lower,
                        "batches": len(runs),
                    }
            out[m.name] = {
                "late": late,
                "full_samples": m.full_samples,
                "samples": m.samples,
                "rescues": rescues,
            }
    return out


def report(results: dict[str, Any], scale: float) -> None:
    print(f"\nOne simulated minute = {scale:g} real seconds; times below are simulated minutes.")
    print(
        "Heavy and other rescue batches are slow honestly: dbt Python models that sleep for their "
        "simulated minutes, plus the real dbt and flow-run overhead."
    )
    pickup = results.get("pickup_minutes", 0.0)
    results = {k: v for k, v in results.items() if isinstance(v, dict)}
    print(
        f"Starting a flow run on an empty queue took {pickup:.1f} simulated minutes today (the control "
        "day's median lateness); each rescue batch's lower bound includes it."
    )
    control = results.get("control", {}).get("late")
    print("\nScheduled runs (24 per day): lateness = actual start - scheduled start")
    print(
        f"{'mode':8} {'total':>7} {'max':>6} {'>5min':>6} {'>10min':>7} {'vs control':>11} "
        f"{'full-queue samples':>19}"
    )
    for name, r in results.items():
        late = r["late"]
        vs = f"{sum(late) - sum(control):+.1f}" if control is not None else "-"
        print(
            f"{name:8} {sum(late):7.1f} {max(late):6.1f} {sum(x > 5 for x in late):6d} "
            f"{sum(x > 10 for x in late):7d} {vs:>11} {r['full_samples']:>9d} of {r['samples']}"
        )
    for name, r in results.items():
        if not r["rescues"]:
            continue
        print(f"\nRescues, {name} mode")
        print(
            f"{'request':20} {'outcome':10} {'merged':>6} {'done':>6} {'merge->done':>11} {'lower bnd':>9} "
            f"{'ratio':>6} {'in window':>9}"
        )
        for rid, x in r["rescues"].items():
            ratio = (
                (x["merge_to_done"] / x["lower_bound"]) if x["merge_to_done"] and x["lower_bound"] else None
            )
            print(
                f"{rid:20} {x['outcome']:10} {x['merged'] or '-':>6} {x['done'] or '-':>6} "
                f"{_f(x['merge_to_done']):>11} {_f(x['lower_bound']):>9} "
                f"{(f'{ratio:.2f}' if ratio else '-'):>6} {'yes' if x['in_window'] else 'NO':>9}"
            )
    goals(results)


def goals(results: dict[str, Any]) -> None:
    """Issue 12's goals for the rescue mode, each with its figure."""
    r = results.get("rescue")
    if not r or not r["rescues"]:
        return
    xs = r["rescues"].values()
    ratios = [x["merge_to_done"] / x["lower_bound"] for x in xs if x["merge_to_done"] and x["lower_bound"]]
    worst = max(ratios) if len(ratios) == len(xs) else None
    lines = [
        ("no scheduled run waited on a full queue", r["full_samples"] == 0, f"{r['full_samples']} samples"),
        ("every rescue finished inside its window", all(x["in_window"] for x in xs),
         f"{sum(x['in_window'] for x in xs)} of {len(xs)}"),
        ("merge-to-done at most 2x its lower bound", worst is not None and worst <= 2.0,
         f"worst {worst:.2f}x" if worst is not None else "a rescue did not finish"),
    ]
    print("\nGoals (rescue mode):")
    for text, ok, figure in lines:
        print(f"  {'met    ' if ok else 'NOT MET'}  {text}: {figure}")


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=4.0, help="real seconds per simulated minute")
    p.add_argument("--lead", type=float, default=90.0, help="real seconds between setup and 21:00")
    p.add_argument("--modes", type=lambda s: tuple(s.split(",")), default=MODES)
    p.add_argument("--database", choices=("postgres", "sqlite"), default="postgres",
                   help="the Prefect server's database (default: PostgreSQL, as in production)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, repos)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--driver", help=argparse.SUPPRESS)
    p.add_argument("--runner-clone", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--until", type=float, help=argparse.SUPPRESS)
    p.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.driver:
        driver(args.driver, args.runner_clone, args.until, args.log, args.scale)
        return 0
    root = Path(tempfile.mkdtemp(prefix="production-day-"))
    started = time.monotonic()
    try:
        results = run_day(args, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    report(results, args.scale)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print(
        f"\nwall time {time.monotonic() - started:.0f} s; median scheduled lateness per mode: "
        + ", ".join(
            f"{k} {statistics.median(v['late']):.1f}" for k, v in results.items() if isinstance(v, dict)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
