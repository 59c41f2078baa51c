"""Post-merge guard (pure): models changed on the protected branch that production has not rebuilt.

Production's state manifest (``dbt.state`` in rescue.yaml: what production last built) is
compared with the protected branch's manifest. A model whose SQL (dbt's checksum) or
data-shaping config differs, or that production never built, is *changed*. A change is
*covered* when a rescue request added at or after the commit that made it selects the model
and is pending or succeeded; what is left is *stale on main*: production serves the old
logic and nobody asked for a rebuild. Each change is alerted once (keyed by its commit) with
a ready-to-commit request selecting ``<changed>+``.

Git, dbt and the webhook live in ``postmerge.py``; this module only compares data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

# Config keys that change what a model's table holds or how it is built (tags, meta, docs,
# grants and hooks do not make production stale).
DATA_CONFIG_KEYS = ("materialized", "incremental_strategy", "unique_key", "on_schema_change", "full_refresh",
                    "event_time", "begin", "batch_size", "lookback", "alias", "schema", "database", "enabled")
GUARDED_TYPES = frozenset({"model", "snapshot"})


@dataclass(frozen=True)
class Change:
    """One model that differs from what production built."""

    unique_id: str
    name: str
    what: str  # "code" | "config" | "new"
    paths: tuple[str, ...] = ()  # files (relative to the dbt project) whose history dates the change


@dataclass(frozen=True)
class StaleModel:
    """A change no request covers, dated by the commit of the protected branch that made it."""

    unique_id: str
    name: str
    what: str
    commit: str
    changed_at: datetime
    subject: str = ""  # the commit's first line
    downstream: int = 0  # data-holding models built from it (they are stale too)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.unique_id, "name": self.name, "what": self.what, "commit": self.commit,
                "changed_at": self.changed_at.isoformat(timespec="seconds"), "subject": self.subject,
                "downstream": self.downstream,
                "hint": f"rescue {self.name}+ (`rescue new --select {self.name}+`)"}


@dataclass(frozen=True)
class Coverage:
    """A request that may cover changes: the models it selects, the commit that added it, its state."""

    request_id: str
    models: frozenset[str]
    commit: str
    active: bool  # pending, waiting or running, or succeeded: it rebuilds (or rebuilt) its models


@dataclass
class GuardReport:
    """What one guard pass found: stale models, and the alerts it sent (by commit)."""

    stale: list[StaleModel] = field(default_factory=list)
    alerted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def changed_models(branch: Mapping[str, Any], production: Mapping[str, Any]) -> list[Change]:
    """Models (and snapshots) of the ``branch`` manifest whose checksum or data config differs from
    ``production``'s, or that production does not have; sorted by name."""
    prod_nodes: Mapping[str, Any] = production.get("nodes") or {}
    out: list[Change] = []
    for uid, node in (branch.get("nodes") or {}).items():
        if not isinstance(node, Mapping) or node.get("resource_type") not in GUARDED_TYPES:
            continue
        if not _enabled(node):
            continue
        path = str(node.get("original_file_path") or "")
        old = prod_nodes.get(uid)
        name = str(node.get("name") or uid.rsplit(".", 1)[-1])
        if not isinstance(old, Mapping):
            out.append(Change(uid, name, "new", (path,) if path else ()))
        elif _checksum(node) != _checksum(old):
            out.append(Change(uid, name, "code", (path,) if path else ()))
        elif _data_config(node) != _data_config(old):
            patch = str(node.get("patch_path") or "").split("://", 1)[-1]
            paths = tuple(p for p in (path, patch, "dbt_project.yml") if p)
            out.append(Change(uid, name, "config", paths))
    return sorted(out, key=lambda c: (c.name, c.unique_id))


def uncovered(changes: Iterable[tuple[Change, str]], coverage: Sequence[Coverage],
              descends: Callable[[str, str], bool]) -> list[tuple[Change, str]]:
    """The ``(change, commit)`` pairs no active request covers.

    A request covers a change when it selects the model and was added at or after the change's
    commit (``descends(change_commit, request_commit)``: the request's commit has it in its history).
    """
    left = []
    for change, commit in changes:
        if not any(c.active and change.unique_id in c.models and c.commit and descends(commit, c.commit)
                   for c in coverage):
            left.append((change, commit))
    return left


def by_commit(stale: Iterable[StaleModel]) -> dict[str, list[StaleModel]]:
    """Stale models grouped by the commit that changed them (one alert per commit)."""
    out: dict[str, list[StaleModel]] = {}
    for s in stale:
        out.setdefault(s.commit, []).append(s)
    return out


def request_id_for(models: Collection[StaleModel], day: str) -> str:
    """``<day>-stale-<first model>[-and-N-more]`` (a valid request id)."""
    from .drafting import slugify

    first = sorted(m.name for m in models)[0]
    more = f"-and-{len(models) - 1}-more" if len(models) > 1 else ""
    return f"{day}-{slugify('stale ' + first + more, 60)}"


def age(delta: timedelta) -> str:
    """'45 min', '3 h', '2 days'."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} days"


def stale_lines(items: list[dict[str, Any]], now: datetime) -> list[str]:
    """`rescue status` lines: "stale on main since <commit>, <age>: <model> ..."."""
    out = []
    for i in items:
        at = i.get("changed_at")
        try:
            since = age(now - datetime.fromisoformat(str(at))) if at else "?"
        except ValueError:
            since = "?"
        down = i.get("downstream")
        more = f" (+{down} downstream table(s))" if down else ""
        commit = str(i.get("commit") or "?")[:12]
        out.append(f"{i.get('name') or i.get('model')}: stale on main since {commit}, {since}{more}; "
                   f"{i.get('hint') or 'add a rescue request for it'}")
    return out


def _enabled(node: Mapping[str, Any]) -> bool:
    cfg = node.get("config")
    return not (isinstance(cfg, Mapping) and cfg.get("enabled") is False)


def _checksum(node: Mapping[str, Any]) -> str:
    cs = node.get("checksum")
    if isinstance(cs, Mapping):
        return f"{cs.get('name', '')}:{cs.get('checksum', '')}"
    return str(cs or "")


def _data_config(node: Mapping[str, Any]) -> dict[str, str]:
    cfg = node.get("config")
    if not isinstance(cfg, Mapping):
        return {}
    return {k: _norm(cfg.get(k)) for k in DATA_CONFIG_KEYS if cfg.get(k) is not None}


def _norm(value: Any) -> str:
    import json

    value = getattr(value, "value", value)  # enums from dbt's in-memory config
    if isinstance(value, datetime | date):  # manifest.json writes them in ISO form (microbatch `begin`)
        value = value.isoformat()
    return json.dumps(value, sort_keys=True, default=str)
