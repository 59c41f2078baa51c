"""`rescue init`: adopt rescue-runner in an existing dbt repository.

``plan_init`` decides what to write (a commented rescue.yaml, rescues/README.md, CI files)
from the repository as found; ``write_files`` writes it, refusing to overwrite anything
unless forced. Templates are package data under ``templates/``; their placeholders are
``@@NAME@@`` (not ``$``: workflow files are full of ``${{ }}`` and shell variables).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RescueError

if TYPE_CHECKING:
    from .config import Config

CI_SYSTEMS = ("github", "gitlab")
# Where each template goes, relative to the repository root.
CI_FILES = {
    "github": {"github/rescue-validate.yml": ".github/workflows/rescue-validate.yml",
               "github/rescue-apply.yml": ".github/workflows/rescue-apply.yml"},
    "gitlab": {"gitlab/rescue.gitlab-ci.yml": ".gitlab/rescue.gitlab-ci.yml"},
}
_SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "dbt_packages", "target", "logs",
              "__pycache__", "site-packages", ".tox", ".nox", ".rescue"}
PYTHON_VERSION = "3.11"


def template(name: str) -> str:
    """The text of a packaged template (``templates/<name>``)."""
    return (resources.files("rescue_runner") / "templates" / name).read_text(encoding="utf-8")


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``@@KEY@@``; a placeholder left over is a bug in the template."""
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    if "@@" in text:
        raise AssertionError(f"unfilled placeholder in template: {text[text.index('@@'):][:40]}")
    return text


def find_dbt_projects(root: Path, max_depth: int = 4) -> list[Path]:
    """Folders under ``root`` holding a dbt_project.yml, shallowest first (vendored and build
    folders such as dbt_packages/, target/, .venv/ are skipped)."""
    found: list[Path] = []
    root = root.resolve()
    for here, dirs, files in os.walk(root):
        depth = len(Path(here).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")
                         and depth < max_depth)
        if "dbt_project.yml" in files:
            found.append(Path(here))
    return sorted(found, key=lambda p: (len(p.relative_to(root).parts), str(p)))


def detect_project(root: Path, explicit: Path | None = None) -> Path:
    """The dbt project folder: ``explicit`` if given, else the single shallowest one found."""
    if explicit is not None:
        if not (explicit / "dbt_project.yml").is_file():
            raise RescueError(f"{explicit}: no dbt_project.yml there",
                              hint="pass the folder that holds dbt_project.yml")
        return explicit.resolve()
    found = find_dbt_projects(root)
    if not found:
        raise RescueError(f"{root}: no dbt_project.yml found in this repository",
                          hint="run `rescue init` at the root of a dbt repository, or pass --project-dir")
    depth = len(found[0].relative_to(root.resolve()).parts)
    same = [p for p in found if len(p.relative_to(root.resolve()).parts) == depth]
    if len(same) > 1:
        names = ", ".join(p.relative_to(root.resolve()).as_posix() or "." for p in same)
        raise RescueError(f"several dbt projects found ({names})", hint="choose one with --project-dir")
    return found[0]


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def default_branch(root: Path) -> str:
    """origin's default branch if known, else the current branch, else ``main``."""
    head = _git(root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if head.startswith("origin/"):
        return head.removeprefix("origin/")
    return _git(root, "symbolic-ref", "--quiet", "--short", "HEAD") or "main"


def local_timezone() -> str:
    """The machine's IANA zone name when it can be told (TZ, /etc/timezone, /etc/localtime), else UTC."""
    from .windows import is_valid_timezone

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    try:
        link = os.readlink("/etc/localtime")
        candidates.append(link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else "")
    except OSError:
        pass
    return next((c for c in candidates if c and is_valid_timezone(c)), "UTC")


def package_spec() -> str:
    """The pip requirement CI installs: this very version of rescue-runner."""
    try:
        return f"rescue-runner=={metadata.version('rescue-runner')}"
    except metadata.PackageNotFoundError:
        return "rescue-runner"


SCHEMAS = ("rescue-request.v1.json", "rescue-config.v1.json")
ADAPTER_EXTRAS = ("duckdb", "postgres")  # adapters with an extra (tested ranges) of their own
SCHEMA_DIR = "schema"


def schema_files(folder: str = SCHEMA_DIR) -> dict[str, str]:
    """The JSON Schemas of requests and rescue.yaml, as `rescue init` and `rescue schema --write`
    place them in a repository (editors' modelines point there: no URL to trust)."""
    base = resources.files("rescue_runner") / "schema_data"
    return {f"{folder}/{name}": (base / name).read_text(encoding="utf-8") for name in SCHEMAS}


def extra_requirements(extra: str) -> list[str]:
    """The requirements of one of rescue-runner's extras, from the installed package's metadata
    (so CI installs the very ranges that were tested)."""
    from packaging.requirements import Requirement

    try:
        declared = metadata.requires("rescue-runner") or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for text in declared:
        req = Requirement(text)
        if req.marker is not None and req.marker.evaluate({"extra": extra}) \
                and not req.marker.evaluate({"extra": ""}) and req.name != "rescue-runner":
            out.append(f"{req.name}{req.specifier}")
    return out


def ci_requirements(config: Config) -> list[str]:
    """What CI installs beside rescue-runner for this configuration: the dbt adapter named by
    ``dbt.adapter`` and the filesystem packages of the storage URLs in use."""
    from .storage import EXTRAS, is_url, scheme

    reqs: list[str] = []
    adapter = config.dbt.adapter
    if adapter:
        tested = extra_requirements(adapter) if adapter in ADAPTER_EXTRAS else []
        reqs += tested or [f"dbt-{adapter}"]
    d = config.dbt
    locations = (d.history, d.manifest, d.state, config.prefect.run_results_storage_path)
    extras = sorted({EXTRAS[scheme(str(loc))] for loc in locations
                     if loc is not None and is_url(loc) and scheme(str(loc)) in EXTRAS})
    for extra in extras:
        reqs += extra_requirements(extra)
    return list(dict.fromkeys(reqs))


def detect_adapter(project_dir: Path) -> str | None:
    """The adapter type of the profile beside the project (its default target), if one is there."""
    import yaml

    try:
        profiles = yaml.safe_load((project_dir / "profiles.yml").read_text(encoding="utf-8"))
        project = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
        profile = profiles[project["profile"]]
        kind = profile["outputs"][profile.get("target") or "dev"]["type"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return kind if isinstance(kind, str) and kind.replace("_", "").replace("-", "").isalnum() else None


def plan_init(root: Path, project_dir: Path, *, ci: Iterable[str], timezone: str,
              branch: str, pip_spec: str) -> dict[str, str]:
    """Every file `rescue init` writes: path relative to ``root`` -> content."""
    from .windows import is_valid_timezone

    if not is_valid_timezone(timezone):
        raise RescueError(f"unknown time zone '{timezone}'",
                          hint="give an IANA name such as Europe/Berlin or America/New_York")
    root = root.resolve()
    try:
        rel = project_dir.resolve().relative_to(root).as_posix() or "."
    except ValueError:
        raise RescueError(f"{project_dir}: the dbt project must be inside {root}",
                          hint="run `rescue init` at the repository root") from None
    if (project_dir / "profiles.yml").is_file():
        profiles = f"  profiles_dir: {_yaml_str(rel)}         # profiles.yml found beside dbt_project.yml"
    else:
        profiles = ("  # profiles_dir: ci/profiles     # folder with profiles.yml "
                    "(default: the project folder; CI needs one without secrets in it)")
    adapter = detect_adapter(project_dir)
    why = "# CI installs dbt-<adapter> beside rescue-runner (`rescue requirements`)"
    adapter_line = f"  adapter: {adapter}  {why}" if adapter else f"  # adapter: snowflake  {why}"
    values = {"VERSION": package_spec().partition("==")[2] or "dev", "PROJECT_DIR": _yaml_str(rel),
              "PROFILES_LINE": profiles, "ADAPTER_LINE": adapter_line, "TIMEZONE": _yaml_str(timezone),
              "BRANCH": _yaml_str(branch), "RESCUE_SPEC": pip_spec.replace('"', ""), "PYTHON": PYTHON_VERSION,
              "PROJECT_GLOB": json.dumps(f"{rel}/**" if rel != "." else "**/*.sql")[1:-1]}
    files = {"rescue.yaml": render(template("rescue.yaml"), values),
             "rescues/README.md": template("rescues-README.md"), **schema_files()}
    for system in ci:
        if system not in CI_FILES:
            raise RescueError(f"unknown CI system '{system}'", hint=f"choose from {', '.join(CI_SYSTEMS)}")
        for name, dest in CI_FILES[system].items():
            files[dest] = render(template(name), values)
    return files


def _yaml_str(value: str) -> str:
    """A plain YAML scalar when that is unambiguous, else a double-quoted (JSON) one."""
    import json
    import re

    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_./+-]*", value) and value.lower() not in {
            "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}:
        return value
    return json.dumps(value)


def write_files(root: Path, files: Mapping[str, str], *, force: bool = False) -> list[str]:
    """Write ``files`` under ``root``; without ``force``, nothing is written if any exists with
    other content (a file already holding exactly that content is left alone)."""
    existing = [rel for rel in files if (root / rel).exists() and not _same(root / rel, files[rel])]
    if existing and not force:
        raise RescueError(f"{existing[0]}: already exists"
                          + (f" (and {len(existing) - 1} more: {', '.join(existing[1:])})"
                             if len(existing) > 1 else ""),
                          hint="nothing was written; move it away or pass --force to overwrite")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def _same(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def next_steps(written: Sequence[str]) -> list[str]:
    """What to tell the user after `rescue init`."""
    steps = ["Review rescue.yaml (the policy section above all) and commit the new files.",
             "Create a request: rescue new   (or: rescue new --select my_model+ --reason ... --yes)",
             "Add the pre-commit hook (docs/getting-started.md): id rescue-validate"]
    if any(w.startswith(".github/") for w in written):
        steps.append("GitHub: add the secrets PREFECT_API_URL (and PREFECT_API_KEY, RESCUE_WEBHOOK_URL) "
                     "for rescue-apply.yml")
    if any(w.startswith(".gitlab/") for w in written):
        steps.append("GitLab: include .gitlab/rescue.gitlab-ci.yml from .gitlab-ci.yml and create the "
                     "*/10 pipeline schedule (see the comments at its top)")
    steps.append("Prefect: create the work pool, queue and dbt_rerun deployment once and start a worker "
                 "(docs/getting-started.md, step 7)")
    return steps
