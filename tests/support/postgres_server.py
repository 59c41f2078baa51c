"""Session fixture: one real PostgreSQL server on 127.0.0.1 (Debian's package).

* ``postgres_server``: ``initdb`` a fresh cluster in a temporary directory (trust
  authentication, superuser ``postgres``), then ``postgres -h 127.0.0.1 -p <free port>`` with
  its socket in that directory; yields a :class:`PostgresServer`; stopped by PID at session end
  (SIGINT = fast shutdown, then SIGKILL) and its directory removed.
* ``postgres_database``: a fresh, empty database on that server per test.

``initdb`` refuses to run as root: as root, both run as the ``postgres`` user (the temporary
directory is made theirs). Skips with the reason when no PostgreSQL binaries are installed
(``.ci/run`` installs them: ``apt-get install postgresql``). A fresh cluster starts in about 2 s.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.prefect_server import free_port

START_TIMEOUT = 60.0
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    """A running server: connect to ``host``:``port`` as ``user`` (trust authentication)."""

    host: str
    port: int
    user: str
    pid: int
    bindir: Path
    log_path: Path

    def env(self, dbname: str = "postgres") -> dict[str, str]:
        """libpq variables and the example profile's variables for ``dbname``."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": dbname,
                "LAKEHOUSE_PG_HOST": self.host, "LAKEHOUSE_PG_PORT": str(self.port),
                "LAKEHOUSE_PG_USER": self.user, "LAKEHOUSE_PG_DATABASE": dbname}

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql (tuples only, unaligned); raise with psql's output on error."""
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", dbname, "-c", sql],
            capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return name


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin directory holding initdb and postgres, else one on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for d in reversed(candidates):
        if (Path(d) / "initdb").is_file() and (Path(d) / "postgres").is_file():
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).resolve().parent / "postgres").is_file():
        return Path(initdb).resolve().parent
    return None


def _run_as() -> str | None:
    """The user the server runs as: ``postgres`` when we are root (initdb refuses root), else us."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        return None
    return SUPERUSER


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or no way to run them (the message says which)."""


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster on 127.0.0.1 for the block; stopped by PID and removed after.

    Raises :class:`PostgresUnavailable` when it cannot run here (the session fixture skips then;
    the production-day benchmark falls back to SQLite).
    """
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does it)")
    user = _run_as()
    if os.geteuid() == 0 and user is None:
        raise PostgresUnavailable("running as root without a 'postgres' user: initdb refuses to run as root")
    # Not under pytest's tmp dir: its parents are private to us, the server's user must get in.
    root = Path(tempfile.mkdtemp(prefix="rescue-pg-"))
    data, log_path = root / "data", root / "server.log"
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    as_user = {"user": user} if user is not None else {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
    init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER,
                           "-E", "UTF8", "--no-sync"], capture_output=True, text=True, env=env,
                          cwd=root, timeout=120, check=False, **as_user)  # type: ignore[call-overload]
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root),
             "-c", "fsync=off", "-c", "max_connections=100"],
            env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, **as_user)
    server = PostgresServer("127.0.0.1", port, SUPERUSER, proc.pid, bindir, log_path)
    try:
        _wait_ready(server, proc)
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server on 127.0.0.1 for the whole session (skips when it cannot run here)."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailable as exc:
            pytest.skip(str(exc))
        yield server


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> str:
    """A fresh empty database on the session server; its name."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


def _wait_ready(server: PostgresServer, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode}:\n{_tail(server.log_path)}")
        ready = subprocess.run([str(server.bindir / "pg_isready"), "-q", "-h", server.host,
                                "-p", str(server.port)], check=False, timeout=10)
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"postgres not ready after {START_TIMEOUT} s:\n{_tail(server.log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT) of the postmaster we started, by PID; SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""
