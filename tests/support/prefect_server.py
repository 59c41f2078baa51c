"""Session fixtures: one real Prefect server and one real process worker on 127.0.0.1.

* ``prefect_server``: ``prefect server start --host 127.0.0.1 --port <free port>`` with a
  temporary ``PREFECT_HOME`` and telemetry off; waits for ``/api/health``; yields a
  :class:`PrefectServer` (``api_url``, ``env`` for clients); stopped by PID at session end
  (SIGTERM, then SIGKILL after a timeout).
* ``prefect_worker``: ``prefect worker start --pool <rescue pool> --work-queue dbt --type process``
  with ``PREFECT_WORKER_QUERY_SECONDS=1``; its flow runs inherit its environment, and fetch the
  commits they build into the worker's own cache (``RESCUE_CACHE_DIR``), shared with no one.

One server per test session: starting one costs about 10 s and 240 MB.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
}
SERVER_START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
WORKER_POOL = "rescue"  # PrefectSettings defaults
WORKER_QUEUE = "dbt"


@dataclass(frozen=True)
class PrefectServer:
    """A running server: ``api_url`` ends in /api; ``env`` points a client process at it."""

    api_url: str
    pid: int
    home: Path
    log_path: Path
    env: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class PrefectWorker:
    """A running process worker polling ``pool``/``queue``."""

    pool: str
    queue: str
    name: str
    pid: int
    log_path: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prefect_executable() -> list[str]:
    script = Path(sys.executable).parent / "prefect"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "prefect"]


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inherited environment without PREFECT_* / DBT_* settings, telemetry off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DBT_"))}
    env.update(TELEMETRY_OFF)
    env.update(extra or {})
    return env


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc). Flow-run processes of a worker run in
    sessions of their own, so stopping the worker's process group misses them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = STOP_TIMEOUT,
                 terms: int = 2) -> None:
    """SIGTERM (``terms`` times, a worker may need two), then SIGKILL; by PID only.

    The process was started in its own session; after it is gone, members of that
    process group (flow runs a worker started) get the same treatment.
    """
    pgid = proc.pid
    for _ in range(terms):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout / terms)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)
    # Children left in the group we created (e.g. flow-run processes of a worker).
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(1.0)


def wait_healthy(api_url: str, proc: subprocess.Popen[bytes], log_path: Path,
                 timeout: float = SERVER_START_TIMEOUT) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}:\n{_tail(log_path)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"prefect server not healthy after {timeout} s:\n{_tail(log_path)}")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One real Prefect server on 127.0.0.1 for the whole session."""
    root = tmp_path_factory.mktemp("prefect-server")
    home = root / "home"
    home.mkdir()
    log_path = root / "server.log"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_env = base_env({"PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
                           "PREFECT_SERVER_API_HOST": "127.0.0.1"})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--no-ui"],
            env=server_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_healthy(api_url, proc, log_path)
        client_home = root / "client-home"
        client_home.mkdir()
        env = base_env({"PREFECT_API_URL": api_url, "PREFECT_HOME": str(client_home),
                        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"})
        yield PrefectServer(api_url=api_url, pid=proc.pid, home=home, log_path=log_path, env=env)
    finally:
        stop_process(proc, terms=1)


@pytest.fixture(scope="session")
def prefect_worker(prefect_server: PrefectServer,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectWorker]:
    """One real process worker on the rescue pool and the ``dbt`` queue (pool created if missing)."""
    root = tmp_path_factory.mktemp("prefect-worker")
    log_path = root / "worker.log"
    name = f"rescue-test-worker-{os.getpid()}"
    env = dict(prefect_server.env)
    env.update({"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
                "RESCUE_CACHE_DIR": str(root / "cache")})  # the worker's own checkout cache
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*prefect_executable(), "worker", "start", "--pool", WORKER_POOL, "--work-queue", WORKER_QUEUE,
             "--type", "process", "--name", name],
            env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_worker_online(prefect_server.api_url, name, proc, log_path)
        yield PrefectWorker(pool=WORKER_POOL, queue=WORKER_QUEUE, name=name, pid=proc.pid, log_path=log_path)
    finally:
        stop_process(proc, terms=2)


def _wait_worker_online(api_url: str, name: str, proc: subprocess.Popen[bytes], log_path: Path,
                        timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect worker exited with {proc.returncode}:\n{_tail(log_path)}")
        with contextlib.suppress(httpx.HTTPError):
            resp = httpx.post(f"{api_url}/work_pools/{WORKER_POOL}/workers/filter", json={}, timeout=2)
            if resp.status_code == 200 and any(w.get("name") == name for w in resp.json()):
                return
        time.sleep(0.5)
    raise RuntimeError(f"worker {name} did not come online in {timeout} s:\n{_tail(log_path)}")


def _tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:]
