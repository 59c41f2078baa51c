"""Where a flow run's dbt project comes from: an exact commit, never a working tree.

* With ``dbt_repo_url`` (server mode, on a worker): the commit ``dbt_repo_commit`` is fetched
  by SHA into this worker's cache (``$RESCUE_CACHE_DIR``, default ``~/.cache/rescue-runner``)
  and its tree is the project; ``dbt_project_path`` and a relative ``profiles_dir`` are
  folders inside it. A token, when needed, comes from the Prefect Secret block named by
  ``dbt_repo_token_secret``, read here on the worker; it is never a parameter.
* Without it (embedded mode): the runner already wrote the commit's tree (``tree_at``) and
  passes its folder as ``dbt_project_path``.

The warehouse must not depend on the directory the process happens to run in: a DuckDB
``path`` in the profile that is relative would open (and create) an empty database in the
worker's throwaway working directory. ``check_profile_paths`` refuses it, naming the
profile, the target and the path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from rescue_runner.dbt_args import UnsafeDbtArgument
from rescue_runner.redact import redact_url, register_secret

CACHE_ENV = "RESCUE_CACHE_DIR"
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_NOT_FILES = (":memory:", "")


class ProfileError(RuntimeError):
    """The profile would make dbt write somewhere that does not survive the run."""


def cache_root() -> Path:
    """This machine's checkout cache: ``$RESCUE_CACHE_DIR`` or ``~/.cache/rescue-runner``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env) / "checkouts"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rescue-runner" / "checkouts"


def project_dirs(url: str | None, commit: str | None, token_secret: str | None, project_path: str | None,
                 profiles_dir: str | None, summary: dict[str, Any]) -> tuple[Path, str | None]:
    """The dbt project folder and profiles folder of this run; records the commit in ``summary``."""
    if commit is not None and not _SHA.fullmatch(commit):
        raise UnsafeDbtArgument(f"dbt_repo_commit {commit!r} is not a full commit SHA")
    if not url:
        if not project_path:
            raise UnsafeDbtArgument("give dbt_project_path or dbt_repo_url")
        summary["project"] = {"path": project_path, "commit": commit}
        return Path(project_path), profiles_dir
    if commit is None:
        raise UnsafeDbtArgument("dbt_repo_url needs dbt_repo_commit: a flow run builds an exact commit")
    sub = PurePosixPath(project_path or ".")
    if sub.is_absolute() or ".." in sub.parts:
        raise UnsafeDbtArgument("with dbt_repo_url, dbt_project_path is a folder inside the repository")
    from rescue_runner.adapters.git_checkout import fetch_commit

    token = _token(token_secret)
    summary["project"] = {"repo_url": redact_url(url), "commit": commit, "path": str(sub)}
    tree = fetch_commit(url, commit, cache_root(), token=token)
    if profiles_dir and not Path(profiles_dir).is_absolute():
        rel = PurePosixPath(profiles_dir)
        if ".." in rel.parts:
            raise UnsafeDbtArgument("a relative profiles_dir is a folder inside the repository")
        profiles_dir = str(tree / rel)
    return tree / sub, profiles_dir


def _token(block: str | None) -> str | None:
    if not block:
        return None
    from prefect.blocks.system import Secret

    try:
        secret: Any = Secret.load(block, _sync=True)  # type: ignore[call-arg]
        value = secret.get()
    except ValueError as exc:
        raise UnsafeDbtArgument(f"Prefect Secret block {block!r} not found: create it on the server "
                                "(repository.token_secret in rescue.yaml)") from exc
    token = str(value.get("token") if isinstance(value, dict) else value)
    register_secret(token)
    return token


def check_profile_paths(project_dir: Path, profiles_dir: str | None, target: str | None) -> None:
    """Refuse a relative DuckDB ``path`` in the profile this run would use (ProfileError).

    dbt resolves it against the process's working directory: on a worker, a temporary
    directory the worker deletes; and never the repository. Anything this check cannot
    read (no profile, Jinja it cannot render) is left to dbt to report.
    """
    try:
        target_name, output, profile_name, where = _rendered_output(project_dir, profiles_dir, target)
    except Exception:
        return
    if str(output.get("type", "")).lower() != "duckdb":
        return
    path = str(output.get("path") or "")
    remote = "://" in path or path.startswith(("md:", "motherduck:"))
    if path in _NOT_FILES or remote or Path(path).is_absolute():
        return
    raise ProfileError(
        f"profile {profile_name!r}, target {target_name!r} ({where}): the DuckDB path {path!r} is relative. "
        f"dbt would open it in the flow run's working directory ({os.getcwd()}), which is thrown away, "
        "and build into an empty database there. Give the warehouse an absolute path (e.g. "
        "path: \"{{ env_var('WAREHOUSE_DB') }}\" with WAREHOUSE_DB set in the worker's environment)")


def _rendered_output(project_dir: Path, profiles_dir: str | None,
                     target: str | None) -> tuple[str, dict[str, Any], str, str]:
    import yaml
    from dbt.config.profile import read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    profile_name = str(project["profile"])
    folder = profiles_dir or os.environ.get("DBT_PROFILES_DIR") or str(Path.home() / ".dbt")
    set_invocation_context(dict(os.environ))
    renderer = ProfileRenderer({})
    profile = read_profile(folder)[profile_name]
    target_name = str(target or renderer.render_value(profile.get("target") or "default"))
    output = renderer.render_data(profile["outputs"][target_name])
    return target_name, dict(output), profile_name, f"{Path(folder).name or folder}/profiles.yml"
