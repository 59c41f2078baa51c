"""``rescue doctor``: the setup checked as the runner and the worker will see it.

Each check returns problems, one line each with its fix; no check raises. The order is the
order a new user meets them: the configuration, the warehouse profile as the worker resolves
it, the Prefect API and its objects, a worker, git (the protected branch and the audit branch),
alerts. Checks that need an earlier one (the deployment needs the API) are skipped when it
failed, so one cause gives one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .errors import RescueError

_ENV_VAR = re.compile(r"""\{\{\s*env_var\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]*)['"]\s*)?\)\s*\}\}""")
_FILE_KEYS = ("path",)  # profile output keys holding a file path (DuckDB's database file)


@dataclass(frozen=True)
class Problem:
    """One thing that will go wrong, and how to fix it."""

    check: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.check}: {self.message} (fix: {self.fix})"


@dataclass
class DoctorReport:
    checked: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def doctor(config_path: Path | None, cwd: Path, *, embedded: bool = False,
           environ: Mapping[str, str] | None = None) -> DoctorReport:
    """Run every check; ``embedded``: batches run in-process on purpose (no Prefect server)."""
    env = dict(os.environ if environ is None else environ)
    report = DoctorReport()

    def run(name: str, fn: Callable[[], list[Problem]]) -> bool:
        report.checked.append(name)
        try:
            found = fn()
        except RescueError as exc:
            found = [Problem(name, exc.message.splitlines()[0], exc.hint or "see the message")]
        report.problems.extend(found)
        return not found

    holder: dict[str, Any] = {}

    def config() -> list[Problem]:
        try:
            holder["cfg"] = load_config(config_path, cwd=cwd)
        except RescueError as exc:
            return [Problem("rescue.yaml", " ".join(exc.message.split()), exc.hint or "fix rescue.yaml")]
        if holder["cfg"].source is None:
            return [Problem("rescue.yaml", f"no rescue.yaml in {cwd} or above: defaults are used",
                            "run `rescue init` at the repository root, or pass --config")]
        return []

    if not run("rescue.yaml", config):
        return report
    cfg: Config = holder["cfg"]
    api = (env.get("PREFECT_API_URL") or "").strip() or None
    deployment: Any = None

    def prefect() -> list[Problem]:
        nonlocal deployment
        if api is None:
            if embedded:
                return []
            return [Problem("prefect", "PREFECT_API_URL is not set: batches would run in this process "
                            "(embedded mode, recorded in .rescue/runs-local)",
                            "export PREFECT_API_URL=http://<server>:4200/api, or pass --embedded if "
                            "that is what you want")]
        from .adapters import prefect_api

        prefect_api.check_api(api)
        p = cfg.prefect
        try:
            deployment = prefect_api.read_deployment(api, f"{p.flow}/{p.deployment}")
        except RescueError as exc:
            return [Problem("prefect", exc.message, "run `rescue deploy`")]
        out = []
        if (deployment.work_pool, deployment.work_queue) != (p.work_pool, p.work_queue):
            where = f"{deployment.work_pool}/{deployment.work_queue}"
            out.append(Problem("prefect", f"deployment {p.flow}/{p.deployment} runs on {where}, rescue.yaml "
                               f"says {p.work_pool}/{p.work_queue}", "run `rescue deploy`"))
        snap = prefect_api.contention_snapshot(api, work_pool=p.work_pool, work_queue=p.work_queue,
                                               lookahead_minutes=0)
        if snap.workers_online <= 0:
            start = f"prefect worker start --pool {p.work_pool} --work-queue {p.work_queue}"
            out.append(Problem("worker", f"no worker online for work pool {p.work_pool}",
                               f"start one: {start}"))
        if prefect_api.HEARTBEAT_ENV not in deployment.job_env:
            out.append(Problem("prefect", "the deployment's runs send no heartbeats: a dead worker would "
                               "leave its run RUNNING for good",
                               "run `rescue deploy` (this version sets them)"))
        return out

    run("prefect", prefect)
    if deployment is not None or api is None:  # else the worker's environment is unknown: one cause, one line
        run("profile", lambda: _profile(cfg, dict(deployment.job_env) if deployment is not None else env,
                                        on_worker=deployment is not None))
    run("git", lambda: _git(cfg))
    run("alerts", lambda: _alerts(cfg, env))
    return report


def _profile(cfg: Config, env: Mapping[str, str], *, on_worker: bool) -> list[Problem]:
    """The dbt profile as the worker resolves it: relative file paths depend on its run directory."""
    import yaml

    where = cfg.dbt.profiles_dir / "profiles.yml"
    try:
        data = yaml.safe_load(where.read_text(encoding="utf-8")) or {}
    except OSError:
        return [Problem("profile", f"{where} not found", "set dbt.profiles_dir in rescue.yaml")]
    except yaml.YAMLError as exc:
        return [Problem("profile", f"{where}: not YAML ({type(exc).__name__})", "fix profiles.yml")]
    project = _project_profile(cfg)
    prof = data.get(project) if isinstance(data, dict) else None
    if not isinstance(prof, dict):
        return [Problem("profile", f"{where} has no profile {project!r}",
                        "add it, or fix dbt_project.yml's profile")]
    target = cfg.dbt.target or prof.get("target")
    output = (prof.get("outputs") or {}).get(target) if isinstance(prof.get("outputs"), dict) else None
    if not isinstance(output, dict):
        return [Problem("profile", f"{where}: profile {project!r} has no target {target!r}",
                        "set dbt.target in rescue.yaml or add the target")]
    seen_by = "the worker's environment (deployment job variables)" if on_worker else "this environment"
    out = []
    for key in _FILE_KEYS:
        raw = output.get(key)
        if not isinstance(raw, str) or raw.startswith(":memory:") or "://" in raw:
            continue
        value = _ENV_VAR.sub(lambda m: env.get(m.group(1), m.group(2) or ""), raw)
        if not value:
            out.append(Problem("profile", f"target {target}: {key} {raw!r} is empty in {seen_by}",
                               "set the variable with `rescue deploy --env NAME=/absolute/path`"))
        elif not Path(value).is_absolute():
            out.append(Problem(
                "profile", f"target {target}: {key} resolves to the relative path {value!r} in {seen_by}; "
                "the worker runs flows in its own directory, so the warehouse would be a new empty file "
                "there",
                "use an absolute path, e.g. `rescue deploy --env LAKEHOUSE_DB=/data/lake.duckdb`"))
    return out


def _project_profile(cfg: Config) -> str:
    import yaml

    try:
        data = yaml.safe_load((cfg.dbt.project_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return str(data.get("profile") or "") if isinstance(data, dict) else ""


def _git(cfg: Config) -> list[Problem]:
    from .adapters.git_audit import GitRemote

    a = cfg.audit
    remote = GitRemote(cfg.root, a.remote)
    heads = remote.ls_remote(f"refs/heads/{a.protected_branch}")
    if f"refs/heads/{a.protected_branch}" not in heads:
        return [Problem("git", f"remote {a.remote} has no branch {a.protected_branch}: nothing is approved",
                        "set audit.protected_branch in rescue.yaml")]
    why = remote.push_problem(a.branch)
    if why is not None:
        return [Problem("git", f"cannot push the audit branch {a.branch} to {a.remote}: {why}",
                        "give the runner's credentials write access to that branch")]
    return []


def _alerts(cfg: Config, env: Mapping[str, str]) -> list[Problem]:
    n = cfg.notifications
    if n is None:
        return [Problem("alerts", "no notifications section: failures, dead runs and stuck locks reach "
                        "nobody", "add notifications: {webhook_url_env: RESCUE_WEBHOOK_URL} to rescue.yaml")]
    url = (env.get(n.webhook_url_env) or "").strip()
    if not url:
        return [Problem("alerts", f"${n.webhook_url_env} is not set here: no alert would be sent",
                        f"export {n.webhook_url_env}=https://hooks.example.com/... where rescue apply runs")]
    if not url.startswith(("https://", "http://")):
        return [Problem("alerts", f"${n.webhook_url_env} is not an http(s) URL", "set it to the webhook URL")]
    return []
