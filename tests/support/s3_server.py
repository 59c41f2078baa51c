"""Session fixture: one S3-compatible server on 127.0.0.1 (moto's standalone ``moto_server``).

* ``s3_server``: ``moto_server -H 127.0.0.1 -p <free port>``; yields an :class:`S3Server` whose
  ``env`` holds what a client process needs (``AWS_ENDPOINT_URL`` and test credentials, read by
  botocore/s3fs from the environment, as in production); stopped by PID at session end.
* ``s3_bucket``: a fresh bucket per test; its name.

Skips with the reason when moto's server is not installed (``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.prefect_server import free_port, stop_process

START_TIMEOUT = 30.0
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rescue-test-key", "AWS_SECRET_ACCESS_KEY": "rescue-test-secret",
                    "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible endpoint; ``env`` points botocore/s3fs at it."""

    endpoint_url: str
    pid: int
    log_path: Path
    env: dict[str, str] = field(hash=False)

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem on this server (no instance cache)."""
        import s3fs

        return s3fs.S3FileSystem(key=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                 secret=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                 client_kwargs={"endpoint_url": self.endpoint_url},
                                 skip_instance_cache=True)

    def create_bucket(self, name: str) -> str:
        self.filesystem().mkdir(name)
        return name


def moto_executable() -> str | None:
    script = Path(sys.executable).parent / "moto_server"
    if script.is_file():
        return str(script)
    return shutil.which("moto_server")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server on 127.0.0.1 for the whole session (skips when moto is not installed)."""
    exe = moto_executable()
    if exe is None:
        pytest.skip("moto's server is not installed (pip install -e '.[dev]' installs moto[server])")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        pytest.skip("s3fs is not installed (pip install -e '.[dev]')")
    root = Path(tempfile.mkdtemp(prefix="rescue-s3-"))
    log_path = root / "moto.log"
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], cwd=root, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ready(endpoint, proc, log_path)
        env = {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
        yield S3Server(endpoint, proc.pid, log_path, env)
    finally:
        stop_process(proc, terms=1)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the session server; its name."""
    return s3_server.create_bucket(f"rescue-{uuid.uuid4().hex[:12]}")


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{endpoint}/moto-api/", timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"moto_server not ready after {START_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")
