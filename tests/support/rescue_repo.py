"""Throwaway git repositories for runner tests: a bare ``origin``, a ``dev`` clone where requests
are merged (committed and pushed to ``main``), and a ``runner`` clone where ``rescue apply`` runs.

``make_repo(dest, project_source, config)`` copies the dbt project sources (no ``target/``,
no database) to ``lakehouse/`` of the repository with the given ``rescue.yaml``. ``rescue()``
runs the installed ``rescue`` command in the runner clone. ``audit_events()`` reads the audit
branch straight from the bare remote (what anyone would see).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rescue_runner.audit import AuditEvent

GIT_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "dev@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
_IGNORE = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb", "*.duckdb.wal", "__pycache__")


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {out.stderr}")
    return out.stdout


@dataclass
class RescueRepo:
    root: Path
    origin: Path
    dev: Path
    runner: Path
    env: dict[str, str] = field(default_factory=dict)  # the environment `rescue` runs with

    @property
    def project_dir(self) -> Path:
        return self.runner / "lakehouse"

    def deploy(self, api_url: str, warehouse: Path) -> None:
        """``rescue deploy`` of the runner clone's rescue.yaml to the server at ``api_url``; its flow
        runs build the example against the DuckDB file ``warehouse`` (LAKEHOUSE_DB)."""
        from rescue_runner import execution
        from rescue_runner.config import load_config
        from support.prefect_server import TELEMETRY_OFF

        execution.deploy(load_config(self.runner / "rescue.yaml"), api_url=api_url,
                         job_variables={"env": {"LAKEHOUSE_DB": str(warehouse), **TELEMETRY_OFF}})

    def merge_request(self, rid: str, body: Mapping[str, Any] | str, message: str | None = None) -> str:
        """Commit ``rescues/<rid>.yaml`` on main and push it (a merged pull request); the commit sha."""
        text = body if isinstance(body, str) else yaml.safe_dump(dict(body), sort_keys=False)
        path = self.dev / "rescues" / f"{rid}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        git(self.dev, "add", str(path))
        git(self.dev, "commit", "-q", "-m", message or f"rescue request {rid}")
        git(self.dev, "push", "-q", "origin", "main")
        return git(self.dev, "rev-parse", "HEAD").strip()

    def remove_request(self, rid: str) -> None:
        git(self.dev, "rm", "-q", f"rescues/{rid}.yaml")
        git(self.dev, "commit", "-q", "-m", f"withdraw {rid}")
        git(self.dev, "push", "-q", "origin", "main")

    def rescue(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300,
               cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*rescue_executable(), *args], cwd=cwd or self.runner,
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode not in (0, 1):
            raise AssertionError(f"rescue {' '.join(args)} exited {proc.returncode}\n--- stdout ---\n"
                                 f"{proc.stdout}\n--- stderr ---\n{proc.stderr[-4000:]}")
        return proc

    def start(self, *args: str, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([*rescue_executable(), *args], cwd=cwd or self.runner,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def audit_events(self, branch: str = "rescue-audit") -> list[AuditEvent]:
        return audit_events(self.origin, branch)

    def clone(self, name: str) -> Path:
        """Another clone of origin (a second runner machine)."""
        dest = self.root / name
        git(self.root, "clone", "-q", str(self.origin), str(dest))
        return dest


def rescue_executable() -> list[str]:
    script = Path(sys.executable).parent / "rescue"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rescue_runner.cli"]


def audit_events(origin: Path, branch: str = "rescue-audit") -> list[AuditEvent]:
    """Every event file on the audit branch of a (bare) repository."""
    try:
        listing = git(origin, "ls-tree", "-r", "--name-only", f"refs/heads/{branch}", "--", "events")
    except RuntimeError:
        return []
    out = []
    for path in listing.split():
        event = AuditEvent.from_json(git(origin, "show", f"refs/heads/{branch}:{path}"))
        assert event.path == path, (event.path, path)
        out.append(event)
    return out


def make_repo(dest: Path, project_source: Path, config: Mapping[str, Any],
              env: Mapping[str, str] | None = None, requests: Sequence[tuple[str, Mapping[str, Any]]] = ()
              ) -> RescueRepo:
    """origin (bare), dev and runner clones holding the project and ``rescue.yaml`` on main."""
    dest.mkdir(parents=True, exist_ok=True)
    origin, dev = dest / "origin.git", dest / "dev"
    git(dest, "init", "-q", "--bare", "-b", "main", str(origin))
    git(dest, "init", "-q", "-b", "main", str(dev))
    shutil.copytree(project_source, dev / "lakehouse", ignore=_IGNORE)
    (dev / "rescue.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
    (dev / ".gitignore").write_text(".rescue/\n*.duckdb\nlakehouse/target/\nlakehouse/logs/\n")
    (dev / "rescues").mkdir()
    (dev / "rescues" / ".keep").write_text("")
    git(dev, "add", "-A")
    git(dev, "commit", "-q", "-m", "dbt project and rescue.yaml")
    git(dev, "remote", "add", "origin", str(origin))
    git(dev, "push", "-q", "origin", "main")
    repo = RescueRepo(dest, origin, dev, dest / "runner", dict(env or os.environ))
    git(dest, "clone", "-q", str(origin), str(repo.runner))
    for rid, body in requests:
        repo.merge_request(rid, body)
    return repo


def publish(root: Path, origin: Path | None = None) -> Path:
    """Make ``root`` a git repository with everything committed and pushed to a new bare ``origin``
    (default: ``<root>.origin.git`` beside it); the warehouse, dbt output and runs stay untracked."""
    origin = origin or root.with_name(root.name + ".origin.git")
    git(root.parent, "init", "-q", "--bare", "-b", "main", str(origin))
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text(".rescue/\n*.duckdb\n*.duckdb.wal\ntarget/\nlogs/\nruns/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "dbt project")
    git(root, "remote", "add", "origin", str(origin))
    git(root, "push", "-q", "origin", "main")
    return origin


def config(*, storage: Path, deployment: str = "rescue_e2e", policy: Mapping[str, Any] | None = None,
           **prefect: Any) -> dict[str, Any]:
    """A rescue.yaml for the test repositories (the project at ``lakehouse/``)."""
    data: dict[str, Any] = {
        "version": 1,
        "requests_dir": "rescues",
        "dbt": {"project_dir": "lakehouse", "profiles_dir": "lakehouse", "target": "dev"},
        "prefect": {"deployment": deployment, "run_results_storage_path": str(storage), **prefect},
        "audit": {"remote": "origin", "protected_branch": "main", "branch": "rescue-audit"},
    }
    if policy:
        data["policy"] = dict(policy)
    return data
