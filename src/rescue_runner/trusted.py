"""Trusted configuration: rescue.yaml as it is on the protected base branch.

In CI a pull request could edit rescue.yaml to relax the very rules its requests break.
``load_base_config(ref)`` reads rescue.yaml (configuration and policy) from the git ref
``ref`` instead of the working tree, and adds RR190 when the working tree's policy differs
from the base one, naming the base policy's owners.
"""

from __future__ import annotations

from pathlib import Path

from .config import CONFIG_FILE, Config, find_config, parse_config_text
from .discovery import display_path
from .errors import RescueError
from .model import Finding
from .policies import policy_from_config
from .policy import Policy, PolicyError


def load_base_config(ref: str, config_path: Path | None = None, *,
                     cwd: Path | None = None) -> tuple[Config, list[Finding]]:
    """The Config from rescue.yaml at ``ref``, and RR190 if this change alters the policy.

    rescue.yaml is ``config_path`` (as given with --config), else the nearest one upwards from
    ``cwd``, else the repository root's; its path inside the repository is read at ``ref``.
    Relative paths in it keep meaning the working tree (where the dbt project and requests
    are). RescueError (exit 2) when git, the ref, the file, or its content is unusable.
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
    return cfg, [change] if change is not None else []


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
