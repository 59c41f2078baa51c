"""Trusted inputs: rescue.yaml and the dbt project as they are at a commit, never a working tree.

In CI a pull request could edit rescue.yaml to relax the very rules its requests break, or
put Jinja in its models that reads secrets and writes files when dbt parses them.
``load_base_config(ref)`` reads rescue.yaml (configuration and policy) from the git ref
``ref`` instead of the working tree, adds RR190 when the working tree's policy differs from
the base one, and points the dbt settings into a clean tree of ``ref`` (``dbt_at``): the
project, its macros, packages and profiles are the base branch's, whatever the working tree
holds. Only request files come from the working tree. The runner judges an approved request
by the same means at the approved commit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import CONFIG_FILE, Config, find_config, parse_config_text
from .discovery import display_path
from .errors import RescueError
from .model import Finding
from .policies import policy_from_config
from .policy import Policy, PolicyError


def load_base_config(ref: str, config_path: Path | None = None, *, cwd: Path | None = None,
                     dbt_from_ref: bool = True) -> tuple[Config, list[Finding]]:
    """The Config from rescue.yaml at ``ref``, and RR190 if this change alters the policy.

    rescue.yaml is ``config_path`` (as given with --config), else the nearest one upwards from
    ``cwd``, else the repository root's; its path inside the repository is read at ``ref``.
    Relative paths in it mean the working tree (requests, history, state), except the dbt
    project and profiles, which with ``dbt_from_ref`` mean the tree of ``ref`` (``dbt_at``).
    RescueError (exit 2) when git, the ref, the file, or its content is unusable.
    """
    from .adapters.git import read_at_ref, repo_root
    from .policies.rr190_policy_changed import policy_change_finding

    cwd = (cwd or Path.cwd()).resolve()
    root = repo_root(cwd)
    head = (config_path or find_config(cwd) or root / CONFIG_FILE).resolve()
    try:
        rel = head.relative_to(root).as_posix()
    except ValueError:
        raise RescueError(f"{head}: outside the git repository {root}",
                          hint="--base-ref reads rescue.yaml from the repository being validated") from None
    shown = f"{rel}@{ref}"
    cfg, findings = parse_config_text(read_at_ref(root, ref, rel), head.parent, shown)
    if cfg is None:
        lines = "\n".join(f"  {f.path}:{f.line or 1}: {f.code} {f.message}" for f in findings if f.blocking)
        raise RescueError(f"{shown}: the base branch's configuration is invalid\n{lines}",
                          hint="fix rescue.yaml on the base branch first")
    base = policy_from_config(cfg.policy)
    head_policy, problem, line = _head_policy(head)
    change = policy_change_finding(base, head_policy, display_path(head, cwd), line, head_problem=problem)
    if dbt_from_ref:
        cfg = dbt_at(cfg, root, ref)
    return cfg, [change] if change is not None else []


def dbt_at(config: Config, root: Path, ref: str) -> Config:
    """``config`` with its dbt project, profiles and a committed manifest taken from commit ``ref``.

    The commit's tree comes from ``git_checkout.tree_at`` (``git archive``: committed files
    only, no hooks), cached per SHA inside the repository's git directory, where no commit can
    plant files. Paths outside the repository (an absolute profiles folder, a downloaded
    production manifest) are kept; a manifest path inside the repository is read from the tree
    when the commit holds it, else from the working tree (an artifact the job downloaded).
    """
    from .adapters.dbt_cache import tree_revision
    from .adapters.git import git_dir
    from .adapters.git_checkout import tree_at

    sha, tree = tree_at(root, ref, git_dir(root) / "rescue-runner")

    def moved(path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            return tree / path.resolve().relative_to(root)
        except ValueError:
            return path  # outside the repository: not the commit's to give

    d = config.dbt
    manifest: Path | str | None = d.manifest  # a URL (str) is storage, not the commit's
    if isinstance(d.manifest, Path):
        in_tree = moved(d.manifest)
        if in_tree is not None and in_tree.exists():
            manifest = in_tree
    project_dir = moved(d.project_dir) or d.project_dir
    revision = None
    if project_dir != d.project_dir:
        # A folder of the commit's clean tree: the commit names what dbt parses there, so the
        # parse cache need not hash the tree (its path is in the key too: a parse records where
        # it ran). Nothing rescue-runner runs adds files to it (no `dbt deps`).
        revision = tree_revision({"commit": sha, "path": str(project_dir)})
    dbt = dataclasses.replace(d, project_dir=project_dir,
                              profiles_dir=moved(d.profiles_dir) or d.profiles_dir, manifest=manifest,
                              revision=revision)
    return dataclasses.replace(config, dbt=dbt)


def _head_policy(path: Path) -> tuple[Policy | None, str | None, int | None]:
    """The working tree's policy, or why there is none; and the line of its `policy:` key."""
    from .loader import load_text

    if not path.is_file():
        return None, "this change removes rescue.yaml", None
    raw = path.read_bytes()
    doc, _ = load_text(raw, path.name)
    line = doc.line_of(("policy",)) if doc is not None else 1
    cfg, findings = parse_config_text(raw, path.parent, path.name)
    if cfg is None:
        first = next((f for f in findings if f.blocking), None)
        why = f" ({first.message})" if first else ""
        return None, f"rescue.yaml in this change is invalid{why}", first.line if first else line
    try:
        return policy_from_config(cfg.policy), None, line
    except PolicyError as exc:  # parse_config_text checks this already; kept for safety
        return None, f"rescue.yaml in this change has an invalid policy ({exc.message})", line
