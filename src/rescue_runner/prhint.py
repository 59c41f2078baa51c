"""PR hint for model changes: which production tables a merge leaves stale, and the request to add.

PR content is data: the changed file *paths* come from ``git diff BASE...HEAD`` and request
files from ``git show HEAD:path``; nothing of the pull request is parsed by dbt. Paths are
mapped to nodes of the BASE project's graph (its SQL files, and the YAML files that patch
them); a file the base does not know (a new model) is listed by path. The changed models
and every data-holding table downstream of them (``downstream.py``) hold the old logic
after the merge, until rebuilt. A request added in the same pull request covers them when
its selection (resolved on the base graph) includes them all.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .errors import RescueError

if TYPE_CHECKING:
    from .adapters.dbt import DbtProject
    from .config import Config

MARKER = "<!-- rescue-runner:changes -->"
_MODEL_SUFFIXES = (".sql", ".py", ".yml", ".yaml", ".csv")


@dataclass
class ChangeHint:
    """What a pull request's model changes mean for production."""

    changed: list[str] = field(default_factory=list)  # unique_ids of base nodes whose files changed
    new_paths: list[str] = field(default_factory=list)  # changed files the base graph does not know
    stale: list[str] = field(default_factory=list)  # changed models + data-holding tables downstream
    covered_by: list[str] = field(default_factory=list)  # request ids in the PR covering all of it
    uncovered: list[str] = field(default_factory=list)  # stale ids no request of the PR selects
    suggestion: str = ""  # request file text to add (empty when covered or nothing changed)
    suggestion_path: str = ""

    @property
    def select(self) -> tuple[str, ...]:
        return tuple(f"{_name(u)}+" for u in self.changed)


def git_lines(repo: Path, *args: str) -> list[str]:
    """``git -C repo args`` output split on NUL (paths as data)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RescueError(f"git is not available: {exc}") from exc
    if out.returncode != 0:
        detail = out.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        raise RescueError(f"git {args[0]} failed in {repo}: {' '.join(detail)}",
                          hint="fetch both commits (actions/checkout with fetch-depth: 0)")
    return [p for p in out.stdout.decode("utf-8", "replace").split("\0") if p]


def changed_files(repo: Path, base: str, head: str) -> list[str]:
    """Paths (relative to the repository root) a pull request changes, deletions included."""
    for ref in (base, head):
        if not ref or ref.startswith("-"):
            raise RescueError(f"'{ref}' is not a git ref")
    return git_lines(repo, "diff", "--name-only", "-z", "--no-renames", f"{base}...{head}", "--")


def map_paths(paths: Iterable[str], project: DbtProject, project_rel: str) -> tuple[list[str], list[str]]:
    """(unique_ids of base models/snapshots/seeds whose file or patch changed, unknown changed paths)."""
    prefix = f"{project_rel}/" if project_rel else ""
    by_path: dict[str, set[str]] = {}
    for uid, node in project.manifest.nodes.items():
        if str(node.resource_type) not in ("model", "snapshot", "seed"):
            continue
        for p in (node.original_file_path, str(getattr(node, "patch_path", "") or "").split("://", 1)[-1]):
            if p:
                by_path.setdefault(prefix + str(PurePosixPath(p)), set()).add(uid)
    changed: set[str] = set()
    unknown: list[str] = []
    for path in paths:
        if not path.startswith(prefix) or not path.endswith(_MODEL_SUFFIXES):
            continue
        hit = by_path.get(path)
        if hit:
            changed |= hit
        elif not path.endswith((".yml", ".yaml")) or "/models/" in f"/{path}":
            unknown.append(path)
    return sorted(changed, key=_name), sorted(unknown)


def hint(config: Config, project: DbtProject, repo: Path, base: str, head: str, *,
         day: str) -> ChangeHint:
    """The whole hint for ``base...head`` (``repo`` holds both commits; nothing of head is run)."""
    from .downstream import stale_downstream
    from .pipeline import decode

    paths = changed_files(repo, base, head)
    try:
        rel = config.dbt.project_dir.resolve().relative_to(config.root.resolve()).as_posix()
    except ValueError:
        rel = ""
    rel = "" if rel == "." else rel
    out = ChangeHint()
    out.changed, out.new_paths = map_paths(paths, project, rel)
    if not out.changed and not out.new_paths:
        return out
    graph = project.graph()
    down = stale_downstream(set(out.changed), graph)
    out.stale = sorted(set(out.changed) | set(down.stale), key=_name)
    requests_rel = _rel(config.requests_dir, config.root)
    covering: set[str] = set()
    for path in paths:
        if not path.startswith(f"{requests_rel}/") or not path.endswith((".yaml", ".yml")) or \
                "/" in path[len(requests_rel) + 1:]:
            continue
        try:
            content = _show(repo, head, path)
        except RescueError:
            continue  # deleted in the pull request
        report = decode(content, path)
        if report.request is None or report.blocking:
            continue
        try:
            models = project.select(report.request.select, report.request.exclude)
        except Exception:  # an unresolvable selection covers nothing; validate reports why
            continue
        if models:
            covering |= models
            if set(out.stale) <= models:
                out.covered_by.append(report.request.id)
    out.uncovered = [u for u in out.stale if u not in covering]
    if out.changed and not out.covered_by:
        out.suggestion, out.suggestion_path = _draft(config, out, day, requests_rel)
    return out


def _draft(config: Config, h: ChangeHint, day: str, requests_rel: str) -> tuple[str, str]:
    from . import drafting
    from .policies import policy_from_config

    policy = policy_from_config(config.policy)
    names = ", ".join(_name(u) for u in h.changed)
    draft = drafting.Draft(
        select=h.select, requested_by="TODO-your-name",
        ticket="TODO-ticket" if policy.request.ticket_required else None,
        reason=f"this pull request changes {names}; rebuild the production tables built from the old logic",
        max_models=(policy.limits.max_models_per_batch or 10) if len(h.stale) > 1 else None)
    more = f" and {len(h.changed) - 1} more" if len(h.changed) > 1 else ""
    slug = drafting.slugify(_name(h.changed[0]) + more)
    return drafting.render_request(draft, drafting.SCHEMA_ID), f"{requests_rel}/{day}-{slug}.yaml"


def render_markdown(h: ChangeHint) -> str:
    """The PR comment section (empty when the pull request changes no model)."""
    from .reporting.prefect_run import md_text

    if not h.changed and not h.new_paths:
        return ""
    out = [MARKER, "## rescue-runner: model changes", ""]
    if h.stale:
        out += [f"After this merge, **{len(h.stale)} production table(s) hold the old logic** until they are "
                "rebuilt (the changed models and every table built from them):", "",
                ", ".join(f"`{md_text(_name(u))}`" for u in h.stale), ""]
    if h.new_paths:
        out += ["New files (not in the base project; built by the next production run):", ""]
        out += [f"- `{md_text(p)}`" for p in h.new_paths] + [""]
    if h.covered_by:
        out += [f"✅ Covered: {', '.join(f'`{md_text(r)}`' for r in h.covered_by)} in this pull request "
                "rebuilds all of them after the merge.", ""]
    elif h.suggestion:
        left = f" ({len(h.uncovered)} not selected by the requests in this pull request)" \
            if len(h.uncovered) < len(h.stale) else ""
        out += [f"⚠️ No rescue request in this pull request rebuilds them{left}. Add this file as "
                f"`{md_text(h.suggestion_path)}` (or run `rescue new --changed BASE..HEAD`):", "",
                "```yaml", h.suggestion.rstrip("\n"), "```", ""]
    return "\n".join(out)


def render_text(h: ChangeHint) -> str:
    if not h.changed and not h.new_paths:
        return "no dbt model changed\n"
    lines = [f"changed: {', '.join(_name(u) for u in h.changed) or '-'}"]
    lines += [f"new file: {p}" for p in h.new_paths]
    lines.append(f"stale after merge: {', '.join(_name(u) for u in h.stale) or '-'}")
    if h.covered_by:
        lines.append(f"covered by: {', '.join(h.covered_by)}")
    elif h.suggestion:
        lines += [f"suggested request {h.suggestion_path}:", h.suggestion.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _show(repo: Path, ref: str, path: str) -> bytes:
    out = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"], capture_output=True, check=False,
                         timeout=60)
    if out.returncode != 0:
        raise RescueError(f"{path}: not in {ref}")
    return out.stdout[: 1 << 20]


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def _name(uid: str) -> str:
    return uid.rsplit(".", 1)[-1]


def parse_range(value: str) -> tuple[str, str]:
    """``BASE..HEAD`` or ``BASE...HEAD`` -> (base, head); HEAD defaults to ``HEAD``."""
    base, sep, head = value.partition("...") if "..." in value else value.partition("..")
    if not sep or not base:
        raise ValueError(f"'{value}' is not a range: write BASE..HEAD, e.g. origin/main..HEAD")
    return base, head or "HEAD"
