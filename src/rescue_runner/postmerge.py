"""The post-merge guard, wired: after each ``rescue apply`` pass, what is stale on main (see guard.py).

Trusted inputs only: the protected branch's tree at its fetched tip (``git_checkout.tree_at``,
never a working tree), its rescue.yaml, production's state manifest (``dbt.state``) and the
audit trail. The branch's project is parsed by dbt (PR code never reaches this: the runner
runs on the protected branch). Records and the once-per-change alert go to the audit branch
(``adapters/git_guard.py``), so every runner and ``rescue status`` see the same notices.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import audit
from .config import Config
from .errors import RescueError
from .guard import (
    Change,
    Coverage,
    GuardReport,
    StaleModel,
    by_commit,
    changed_models,
    request_id_for,
    uncovered,
)
from .guard import age as _age

if TYPE_CHECKING:
    from .adapters.dbt import DbtProject
    from .runner import Wiring

GUARD_AUTHOR = "rescue-runner post-merge guard"


def run_guard(w: Wiring, now: datetime, *, dry_run: bool = False,
              say: Callable[[str], None] = lambda line: None) -> GuardReport:
    """One guard pass: record the stale list, alert each new change once. Never raises for a
    problem of its own (it is reported and the next pass tries again): the runner's work is done."""
    report = GuardReport()
    try:
        cfg = w.source.config()
        if cfg.dbt.state is None:
            return report
        _check(w, cfg, now, report, dry_run=dry_run, say=say)
    except RescueError as exc:
        report.notes.append(f"post-merge guard: {exc}")
        say(f"warning: post-merge guard: {exc}")
    except Exception as exc:  # the runner's own work is done and recorded: never fail the pass here
        report.notes.append(f"post-merge guard: {type(exc).__name__}: {exc}")
        say(f"warning: post-merge guard: {type(exc).__name__}: {exc}")
    return report


def _check(w: Wiring, cfg: Config, now: datetime, report: GuardReport, *, dry_run: bool,
           say: Callable[[str], None]) -> None:
    from .adapters.git_guard import GuardRecords, descends, last_change
    from .downstream import stale_downstream
    from .graph import load_manifest_json
    from .pipeline import cache_root
    from .storage import fetch_state

    assert cfg.dbt.state is not None
    state_file = fetch_state(cfg.dbt.state, cache_root(cfg), cfg.storage.credentials()) / "manifest.json"
    if not state_file.is_file():
        raise RescueError(f"{state_file}: no production state manifest",
                          hint="dbt.state must hold the manifest.json production last built")
    production = load_manifest_json(state_file)
    tip = w.source.tip
    project, rel, branch_manifest = _branch_project(w, cfg, tip)
    changes = changed_models(branch_manifest, production)
    dated: list[tuple[Change, str]] = []
    when: dict[str, tuple[datetime, str]] = {}
    for ch in changes:
        found = last_change(w.remote, tip, [f"{rel}/{p}" if rel else p for p in ch.paths])
        sha, at, subject = found or (tip, now, "")
        dated.append((ch, sha))
        when[sha] = (at, subject)
    left = uncovered(dated, _coverage(w, project), lambda a, c: descends(w.remote, a, c))
    graph = project.graph()
    report.stale = [
        StaleModel(ch.unique_id, ch.name, ch.what, sha, when[sha][0], when[sha][1],
                   len(stale_downstream({ch.unique_id}, graph).stale))
        for ch, sha in left]
    records = GuardRecords(w.remote, w.store)
    if dry_run:
        return
    records.write_stale([s.to_dict() for s in report.stale], now=now)
    for sha, models in by_commit(report.stale).items():
        if records.alerted(sha):
            continue
        text, rid, preview = draft_request(cfg, project, models, now)
        record = {"commit": sha, "models": [m.unique_id for m in models], "request_id": rid,
                  "alerted_at": now.isoformat(timespec="seconds")}
        if not records.claim_alert(sha, record):
            continue  # another runner alerted first
        report.alerted.append(sha)
        _alert(cfg, models, rid, text, preview, now)
        say(f"stale on main since {sha[:12]}: {', '.join(m.name for m in models)}; alert sent with "
            f"a request to commit as {_requests_rel(cfg)}/{rid}.yaml")


def _branch_project(w: Wiring, cfg: Config, tip: str) -> tuple[DbtProject, str, dict[str, Any]]:
    """The protected branch's dbt project at ``tip``, parsed from a clean tree of that commit."""
    from .adapters.dbt import DbtProject, manifest_as_dict
    from .adapters.dbt_cache import tree_revision
    from .adapters.git_checkout import tree_at
    from .graph import load_manifest_json

    root = w.remote.root
    try:
        rel = cfg.dbt.project_dir.resolve().relative_to(root).as_posix()
    except ValueError:
        raise RescueError(f"{cfg.dbt.project_dir}: the dbt project is outside the repository") from None
    rel = "" if rel == "." else rel
    sha, tree = tree_at(root, tip, cfg.root / ".rescue" / "trees")
    profiles = cfg.dbt.profiles_dir
    with contextlib.suppress(ValueError):  # profiles outside the repository (CI secrets) stay where they are
        profiles = tree / profiles.resolve().relative_to(root)
    project_dir = tree / rel if rel else tree
    project = DbtProject.from_project(project_dir, profiles, cfg.dbt.target,
                                      revision=tree_revision({"commit": sha, "path": str(project_dir)}))
    written = project_dir / "target" / "manifest.json"
    manifest: dict[str, Any] = (load_manifest_json(written) if written.is_file()
                                else manifest_as_dict(project.manifest))
    return project, rel, manifest


def _coverage(w: Wiring, project: DbtProject) -> list[Coverage]:
    """Every request that rebuilds (or rebuilt) models: from the audit trail and the branch."""
    events = w.store.events()
    states = audit.derive_all(events)
    out: list[Coverage] = []
    validated: dict[str, Mapping[str, Any]] = {}
    for e in audit.timeline(events):
        if e.type == audit.REQUEST_VALIDATED:
            validated[e.request_id] = e.fields
    for rid, fields in validated.items():
        s = states[rid]
        models = frozenset(m for b in fields.get("batches") or () for m in b.get("models") or ())
        active = not s.terminal or s.outcome == audit.SUCCEEDED
        out.append(Coverage(rid, models, str(fields.get("commit") or ""), active))
    for a in w.source.approved():
        if a.request_id in validated or a.request is None or a.expired:
            continue
        try:
            models = frozenset(project.select(a.request.select, a.request.exclude))
        except Exception:  # an unresolvable request covers nothing; its validation says why
            continue
        out.append(Coverage(a.request_id, models, a.commit, True))
    return out


def draft_request(cfg: Config, project: DbtProject, models: list[StaleModel],
                  now: datetime) -> tuple[str, str, str]:
    """(request file text, request id, plan preview) for ``<changed>+``, validated as written."""
    from . import app, drafting
    from .policies import policy_from_config
    from .reporting.plan import render_plan_text

    policy = policy_from_config(cfg.policy)
    sha = models[0].commit
    names = ", ".join(m.name for m in models)
    subject = f' ("{models[0].subject[:80]}")' if models[0].subject else ""
    reason = (f"{names} changed on {cfg.audit.protected_branch} in commit {sha[:12]}{subject}; production "
              "still holds the old logic: rebuild it and every table downstream")
    select = tuple(f"{m.name}+" for m in models)
    size = len(project.select(select))
    expires = None
    if policy.expiry.required:
        days = min(7, policy.expiry.max_days or 7)
        expires = (now + timedelta(days=days)).date().isoformat()
    draft = drafting.Draft(
        select=select, reason=reason, requested_by=GUARD_AUTHOR,
        ticket=sha[:12] if policy.request.ticket_required else None,
        max_models=(policy.limits.max_models_per_batch or 10) if size > 1 else None, expires=expires)
    rid = request_id_for(models, now.date().isoformat())
    text = drafting.render_request(draft, drafting.SCHEMA_ID)
    with tempfile.TemporaryDirectory(prefix="rescue-guard-") as tmp:
        path = Path(tmp) / f"{rid}.yaml"
        path.write_text(text, encoding="utf-8")
        report = app.validate([path], cfg, cwd=Path(tmp), dbt=project, now=now)
    r = report.requests[0]
    lines = [f"{f.severity.value} {f.code} {f.message}" for f in r.findings]
    if r.plan is not None and report.graph is not None:
        lines.append(render_plan_text(r.plan, report.graph, r.timeline).rstrip("\n"))
    if not r.ok:
        lines.insert(0, "this draft does not pass the policy as it is: edit it before committing")
    return text, rid, "\n".join(lines)


def _alert(cfg: Config, models: list[StaleModel], rid: str, text: str, preview: str, now: datetime) -> None:
    from . import notify

    sha = models[0].commit
    age = _age(now - models[0].changed_at)
    down = sum(m.downstream for m in models)
    detail = (f"{', '.join(m.name for m in models)} changed on {cfg.audit.protected_branch} in commit "
              f"{sha[:12]} ({age} ago) and no rescue request covers it: production still serves the old "
              f"logic ({down} downstream table(s) too). Commit this request as "
              f"{_requests_rel(cfg)}/{rid}.yaml to rebuild them:")
    event = notify.NotifyEvent(kind="stale_on_main", request_id=rid, state="stale on main", detail=detail,
                               reason=models[0].subject, at=now, body=f"{text}\n# plan preview\n"
                               + "\n".join(f"# {line}" for line in preview.splitlines()))
    notify.notify(cfg.notifications, event)


def _requests_rel(cfg: Config) -> str:
    try:
        return cfg.requests_dir.resolve().relative_to(cfg.root.resolve()).as_posix()
    except ValueError:
        return cfg.requests_dir.name


__all__ = ["GUARD_AUTHOR", "draft_request", "run_guard"]
