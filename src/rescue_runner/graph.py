"""A manifest.json-shaped dict -> ProjectGraph (plain data, no dbt import).

The dbt adapter builds the same dict shape from dbt's in-memory Manifest and calls
``graph_from_manifest_dict``, so every optional key may be missing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .model import NodeInfo, ProjectGraph

# Resource types a rescue can select (everything else is only followed for lineage).
SELECTABLE_TYPES = frozenset({"model", "seed", "snapshot"})

# The node config that decides what a rebuild does; with the code checksum it is the node's digest
# (``node_digests``), which plan fingerprints cover for the selected nodes and their ancestors.
CONFIG_KEYS = ("materialized", "full_refresh", "incremental_strategy", "event_time", "begin",
               "batch_size", "tags", "meta", "unique_key", "enabled", "on_schema_change")
# Everything the package reads from a node's config (the digest keys, plus what the post-merge
# guard compares: where the table lives and how microbatch reloads): an in-memory manifest is
# turned into manifest.json's shape with these, so both sides of a comparison hold the same keys.
MANIFEST_CONFIG_KEYS = (*CONFIG_KEYS, "lookback", "alias", "schema", "database")

# Top-level manifest sections whose entries have graph edges when parent_map is absent.
_EDGE_SECTIONS = (
    "nodes",
    "sources",
    "exposures",
    "metrics",
    "semantic_models",
    "saved_queries",
    "unit_tests",
)


def load_manifest_json(path: str | Path) -> dict[str, Any]:
    """Read a ``manifest.json`` (or ``.json.gz``) into a dict; RescueError (exit 2) for anything that
    is not one: unreadable, not gzip/UTF-8/JSON, nested too deep, or not an object with ``nodes``."""
    from .errors import RescueError

    p = Path(path)
    fix = "point dbt.manifest (or --manifest) at dbt's target/manifest.json"
    try:
        with p.open("rb") as raw:
            magic = raw.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(p, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise RescueError(f"{p}: manifest not found", hint=fix) from None
    except json.JSONDecodeError as exc:
        raise RescueError(f"{p}:{exc.lineno}: not JSON ({exc.msg}, column {exc.colno})", hint=fix) from None
    except RecursionError:
        raise RescueError(f"{p}: not a dbt manifest (JSON nested too deep to read)", hint=fix) from None
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise RescueError(f"{p}: not a readable manifest ({type(exc).__name__}: {exc})", hint=fix) from None
    if not isinstance(data, dict):
        raise RescueError(f"{p}: not a dbt manifest (the top level is a JSON {_json_type(data)}, "
                          "not an object)", hint=fix)
    for key in ("nodes", "metadata"):
        if not isinstance(data.get(key), dict):
            raise RescueError(f"{p}: not a dbt manifest ({key!r} is missing or not an object)", hint=fix)
    return data


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def graph_from_manifest_dict(d: Mapping[str, Any]) -> ProjectGraph:
    """Build the ProjectGraph of a manifest dict (``nodes``, ``sources``, ``parent_map``)."""
    nodes_raw: Mapping[str, Any] = d.get("nodes") or {}
    sources_raw: Mapping[str, Any] = d.get("sources") or {}

    nodes = {
        uid: _node_info(uid, n)
        for uid, n in sorted(nodes_raw.items())
        if isinstance(n, Mapping) and n.get("resource_type", uid.split(".", 1)[0]) in SELECTABLE_TYPES
    }
    parents = _parents(d)
    # Every node and source is a key, even a parentless one missing from parent_map.
    for uid in (*nodes_raw, *sources_raw):
        parents.setdefault(uid, ())
    return ProjectGraph(
        nodes=nodes,
        parents=dict(sorted(parents.items())),
        identity=manifest_identity(d),
        digests=_Digests(d),
    )


def node_digests(d: Mapping[str, Any]) -> dict[str, str]:
    """``{unique_id: digest}`` of every node and source: its code checksum and ``CONFIG_KEYS`` config.

    A fingerprint that covers the digests of a request's nodes and their ancestors changes when
    one of them changes, and only then (an unrelated model's change leaves it alone).
    """
    return dict(_Digests(d))


class _Digests(Mapping[str, str]):
    """``node_digests`` computed on first use of each node: a fingerprint reads only the request's
    nodes and their ancestors, so a big manifest is not hashed whole (it costs ~40% of a graph)."""

    def __init__(self, d: Mapping[str, Any]) -> None:
        self._entries: dict[str, Any] = {**(d.get("sources") or {}), **(d.get("nodes") or {})}
        self._done: dict[str, str] = {}

    def __getitem__(self, uid: str) -> str:
        found = self._done.get(uid)
        if found is None:
            entry = self._entries[uid]
            cfg = entry.get("config") if isinstance(entry, Mapping) else None
            cfg = cfg if isinstance(cfg, Mapping) else {}
            blob = json.dumps([_checksum(entry), {k: cfg.get(k) for k in CONFIG_KEYS}], sort_keys=True,
                              separators=(",", ":"), ensure_ascii=True, default=str).encode()
            found = self._done[uid] = hashlib.sha256(blob).hexdigest()[:32]
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def manifest_identity(d: Mapping[str, Any]) -> str:
    """``sha256:`` of the sorted (unique_id, checksum) pairs of all nodes and sources.

    Sources carry no checksum in dbt manifests; they count by id (an empty checksum),
    so adding or removing one still changes the identity.
    """
    pairs = sorted(
        (uid, _checksum(entry))
        for section in ("nodes", "sources")
        for uid, entry in (d.get(section) or {}).items()
    )
    blob = json.dumps(pairs, separators=(",", ":"), ensure_ascii=True).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _checksum(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return ""
    cs = entry.get("checksum")
    if isinstance(cs, Mapping):
        return f"{cs.get('name', '')}:{cs.get('checksum', '')}"
    return "" if cs is None else str(cs)


def _parents(d: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    parent_map = d.get("parent_map")
    if isinstance(parent_map, Mapping):
        return {uid: tuple(sorted(set(ps or ()))) for uid, ps in parent_map.items()}
    out: dict[str, tuple[str, ...]] = {}
    for section in _EDGE_SECTIONS:
        for uid, entry in (d.get(section) or {}).items():
            dep = entry.get("depends_on") if isinstance(entry, Mapping) else None
            ps = dep.get("nodes") if isinstance(dep, Mapping) else None
            out[uid] = tuple(sorted(set(ps or ())))
    return out


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _node_info(uid: str, n: Mapping[str, Any]) -> NodeInfo:
    config: Mapping[str, Any] = n.get("config") or {}
    full_refresh = config.get("full_refresh")
    tags = n.get("tags")
    if tags is None:
        tags = config.get("tags") or ()
    if isinstance(tags, str):
        tags = (tags,)
    meta = n.get("meta") or config.get("meta") or {}
    return NodeInfo(
        unique_id=uid,
        name=str(n.get("name") or uid.rsplit(".", 1)[-1]),
        resource_type=str(n.get("resource_type") or uid.split(".", 1)[0]),
        materialized=_opt_str(config.get("materialized")),
        full_refresh=None if full_refresh is None else bool(full_refresh),
        incremental_strategy=_opt_str(config.get("incremental_strategy")),
        event_time=_opt_str(config.get("event_time")),
        begin=_opt_str(config.get("begin")),
        batch_size=_opt_str(config.get("batch_size")),
        tags=tuple(str(t) for t in tags),
        meta=dict(meta),
        original_file_path=str(n.get("original_file_path") or ""),
        fqn=tuple(str(p) for p in n.get("fqn") or ()),
    )
