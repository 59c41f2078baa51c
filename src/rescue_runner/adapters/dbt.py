"""dbt behind one small interface: load a project or a manifest once, resolve selections.

Selections are resolved with dbt's own selector classes (``dbt.graph``) on the
loaded Manifest, which gives exactly what ``dbt ls --select S --exclude E
--resource-type model`` prints (a differential test keeps us honest) at a
fraction of the cost: the graph is linked once per run, without dbt's cycle
check (a manifest dbt produced is acyclic; a parsed project was checked by the
parse), and each selection takes milliseconds instead of a full dbt invocation.
These are internal dbt APIs: dbt-core is pinned to 1.11.x for that reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import RescueError
from ..model import ProjectGraph

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


class SelectionError(Exception):
    """dbt refused a selector (unknown method, missing state, bad syntax)."""


class DbtProject:
    """A dbt Manifest loaded once, with its linked graph, ready for many selections.

    With the cache (adapters.dbt_cache), a manifest file seen before is not even loaded until
    a selection needs it: its graph (plain data) and the selections already resolved on that
    exact manifest content come from the cache, so a CI run validating the same requests
    against the same production manifest needs no dbt at all.
    """

    def __init__(self, manifest: Any, project_root: Path, state_dir: Path | None, source: str, *,
                 loader: Callable[[], Any] | None = None, cache_key: str | None = None) -> None:
        self._manifest = manifest
        self._loader = loader  # loads the manifest (and its derived parts) when first needed
        self.project_root, self.state_dir, self.source = project_root, state_dir, source
        self._graph: Any = None
        self._selector: Any = None
        self._project_graph: ProjectGraph | None = None
        self._nx_graph: Any = None  # dbt's linked graph (networkx)
        self._members: Any = None  # its enabled, non-empty part, as selection walks it
        self._fqn: _FqnIndex | None = None
        # Selections resolved on this exact manifest content (not with state: it is another input).
        self._memo_key = cache_key if state_dir is None else None
        self._memo: dict[str, list[str]] = {}
        self._memo_dirty = False
        self.parsed = False  # True when dbt parsed the project for this object (not the cache)

    @property
    def manifest(self) -> Any:
        if self._manifest is None:
            assert self._loader is not None
            self._manifest = self._loader()
            _ensure_flags()
        return self._manifest

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def from_project(cls, project_dir: Path, profiles_dir: Path, target: str | None = None,
                     state_dir: Path | None = None, *, revision: str | None = None) -> DbtProject:
        """Parse the project once with dbt (partial parsing applies), or take that parse from the
        parse cache (adapters.dbt_cache). ``revision``: the commit SHA ``project_dir`` holds
        exactly (a clean checkout), which keys the cache without hashing the tree. Raises RescueError."""
        if not (project_dir / "dbt_project.yml").is_file():
            raise RescueError(f"{project_dir}: no dbt_project.yml here",
                              hint="set dbt.project_dir in rescue.yaml or pass --project-dir")
        if not (profiles_dir / "profiles.yml").is_file():
            raise RescueError(f"{profiles_dir}: no profiles.yml here",
                              hint="set dbt.profiles_dir in rescue.yaml or pass --profiles-dir")

        def parse() -> Any:
            from dbt.cli.main import dbtRunner

            args = ["parse", "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir),
                    "--quiet", "--no-use-colors"]
            if target:
                args += ["--target", target]
            res = dbtRunner().invoke(args)
            if not res.success or res.result is None:
                detail = str(res.exception) if res.exception else "dbt parse failed (see logs/dbt.log)"
                raise RescueError(f"{project_dir}: dbt could not parse the project: {_one_line(detail)}",
                                  hint="run `dbt parse` in the project to see the full error")
            return res.result

        from . import dbt_cache

        root, source = project_dir.resolve(), f"project {project_dir}"
        key = dbt_cache.project_key(project_dir, profiles_dir, target, revision=revision)
        cache_key = f"parse-{key}" if key else None
        kept = dbt_cache.load("graph", cache_key) if cache_key else None
        if (isinstance(kept, dict) and isinstance(kept.get("graph"), ProjectGraph)
                and dbt_cache.env_matches(kept.get("env"))):
            # Parsed before: the graph is all planning needs; dbt's Manifest only when asked.
            project = cls(None, root, state_dir, source, cache_key=cache_key,
                          loader=lambda: dbt_cache.cached_parse(project_dir, profiles_dir, target, parse,
                                                                key=key)[0])
            project._project_graph = kept["graph"]
            project._memo = _stored_memo(cache_key)
            return project
        manifest, how, _ = dbt_cache.cached_parse(project_dir, profiles_dir, target, parse, key=key)
        _ensure_flags()
        project = cls(manifest, root, state_dir, source, cache_key=cache_key)
        project.parsed = how == "parsed"
        if cache_key:
            project._memo = _stored_memo(cache_key)
            dbt_cache.store("graph", cache_key, {"graph": project.graph(), "env": dbt_cache.env_of(manifest)})
        return project

    @classmethod
    def from_manifest(cls, manifest_path: Path, project_root: Path | None = None,
                      state_dir: Path | None = None) -> DbtProject:
        """Load a manifest.json or manifest.json.gz (a production artifact), or what the cache kept
        of it (its graph at once, the Manifest itself when a selection needs dbt). Raises RescueError."""
        from . import dbt_cache

        root = (project_root or manifest_path.parent).resolve()
        source = f"manifest {manifest_path}"
        key = dbt_cache.manifest_key(manifest_path)
        kept = dbt_cache.load("graph", f"manifest-{key}") if key else None
        if key and isinstance(kept, dict) and isinstance(kept.get("graph"), ProjectGraph):
            project = cls(None, root, state_dir, source, cache_key=f"manifest-{key}")
            project._project_graph = kept["graph"]
            project._memo = _stored_memo(project._memo_key)

            def loader() -> Any:
                parts = dbt_cache.load("manifest", key)
                if isinstance(parts, dict) and {"manifest", "graph", "fqn", "members"} <= parts.keys():
                    project._nx_graph, project._fqn = parts["graph"], parts["fqn"]
                    project._members = parts["members"]
                    return parts["manifest"]
                return load_manifest(manifest_path)

            project._loader = loader
            return project
        project = cls(load_manifest(manifest_path), root, state_dir, source,
                      cache_key=f"manifest-{key}" if key else None)
        _ensure_flags()
        if key:  # everything selection derives from the manifest, built once and kept with it
            project._ensure_selector()
            dbt_cache.store("manifest", key, {"manifest": project.manifest, "graph": project._linked(),
                                              "fqn": project._fqn_index(), "members": project._members})
            dbt_cache.store("graph", f"manifest-{key}", {"graph": project.graph(), "env": {}})
        return project

    # ---- selection -----------------------------------------------------------------------

    def _ensure_selector(self) -> Any:
        if self._selector is None:
            from dbt.graph.graph import Graph
            from dbt.graph.selector import ResourceTypeSelector
            from dbt.node_types import NodeType

            manifest = self.manifest  # may fill the derived parts from the cache
            self._graph = Graph(self._linked())
            fqn_index = self._fqn_index()
            members = self._members

            class _MemoSelector(ResourceTypeSelector):
                """dbt's selector, remembering each method search (the costly part: a scan of
                every node) for the run; graph operators and set logic still run per call."""

                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    super().__init__(*args, **kwargs)
                    self._memo: dict[tuple[Any, ...], set[Any]] = {}
                    # dbt walks a filtered view of the graph, whose every node listing re-applies
                    # the filter (seconds over 100 requests on 8,000 nodes): walk a plain copy.
                    self.graph = Graph(members if members is not None else self.graph.graph.copy())

                def select_included(self, included_nodes: Any, spec: Any) -> Any:
                    key = (str(spec.method), tuple(spec.method_arguments), str(spec.value),
                           len(included_nodes))
                    if key not in self._memo:
                        if str(spec.method) == "fqn" and not any(c in str(spec.value) for c in "*?[]"):
                            # dbt's fqn matcher still decides; it just scans only the nodes that
                            # could possibly match (a superset, see _fqn_candidates).
                            included_nodes = set(included_nodes) & fqn_index.candidates(str(spec.value))
                        self._memo[key] = super().select_included(included_nodes, spec)
                    return set(self._memo[key])

            self._selector = _MemoSelector(
                graph=self._graph, manifest=manifest, previous_state=self._previous_state(),
                resource_types=[NodeType.Model], include_empty_nodes=True)
            self._members = self._selector.graph.graph
        return self._selector

    def _linked(self) -> Any:
        """dbt's dependency graph of the manifest (networkx), linked once."""
        if self._nx_graph is None:
            from dbt.compilation import Linker

            linker = Linker()
            linker.find_cycles = lambda: None  # type: ignore[method-assign]
            linker.link_graph(self.manifest)
            self._nx_graph = linker.graph
        return self._nx_graph

    def _fqn_index(self) -> _FqnIndex:
        if self._fqn is None:
            self._fqn = _FqnIndex(self.manifest)
        return self._fqn

    def _previous_state(self) -> Any:
        if self.state_dir is None:
            return None
        if not (self.state_dir / "manifest.json").is_file():
            raise RescueError(f"{self.state_dir}: no manifest.json for state: selectors",
                              hint="set dbt.state in rescue.yaml to a folder holding "
                              "the production manifest.json")
        from dbt.contracts.state import PreviousState

        return PreviousState(self.state_dir, self.project_root / "target", self.project_root)

    def select(self, select: Sequence[str], exclude: Sequence[str] = ()) -> set[str]:
        """unique_ids of the models dbt selects, like ``dbt ls --resource-type model``.

        Raises SelectionError with dbt's message when dbt refuses the selection.
        """
        memo = None
        if self._memo_key is not None and all(_pure(s) for s in [*select, *exclude]):
            memo = json.dumps([list(select), list(exclude)])
            if memo in self._memo:
                return set(self._memo[memo])
        from dbt.graph.cli import parse_difference

        selector = self._ensure_selector()
        try:
            with self._project_root_context():
                spec = parse_difference(list(select), list(exclude) or None)
                chosen = set(selector.get_selected(spec))
        except RescueError:
            raise
        except Exception as exc:  # dbt raises a zoo of exception types for bad selectors
            raise SelectionError(_one_line(str(exc))) from exc
        if memo is not None:
            self._memo[memo] = sorted(chosen)
            self._memo_dirty = True
        return chosen

    def remember(self) -> None:
        """Keep the selections resolved so far in the cache, for the next run on the same input."""
        if self._memo_dirty and self._memo_key is not None:
            from . import dbt_cache

            latest = _stored_memo(self._memo_key)  # another run may have added some meanwhile
            merged = {**latest, **self._memo}
            dbt_cache.store("selections", self._memo_key, dict(list(merged.items())[-_MEMO_MAX:]))
            self._memo_dirty = False

    @contextmanager
    def _project_root_context(self) -> Iterator[None]:
        """dbt's path: method globs from the project root; dbt's warnings (e.g. "does not match
        any enabled nodes") are silenced: our own findings report them, and stdout stays
        clean for --format json."""
        from dbt_common.events import event_manager_client as emc
        from dbt_common.events.contextvars import task_contextvars
        from dbt_common.events.event_manager import EventManager

        previous = emc.get_event_manager()
        emc.ctx_set_event_manager(EventManager())
        try:
            with task_contextvars(project_root=str(self.project_root)):
                yield
        finally:
            emc.ctx_set_event_manager(previous)

    # ---- plain data for the rest of the tool ---------------------------------------------

    def graph(self) -> ProjectGraph:
        """The graph as plain data (see rescue_runner.graph)."""
        if self._project_graph is None:
            from ..graph import graph_from_manifest_dict

            self._project_graph = graph_from_manifest_dict(manifest_as_dict(self.manifest))
        return self._project_graph


_MEMO_MAX = 20_000  # selections kept per manifest
# Selector methods whose answer depends only on the manifest (not on files, state or results).
_PURE_METHODS = frozenset({"fqn", "tag", "package", "config", "resource_type", "exposure", "metric",
                           "group", "access", "version", "semantic_model", "saved_query", "unit_test",
                           "wildcard", "source", "test_name", "test_type"})
_OPERATORS = re.compile(r"^(@|\d*\+)?(?P<body>.*?)(\+\d*)?$")


def _pure(selector: str) -> bool:
    """True when a selection string can only mean the same on the same manifest: no path:,
    file:, state:, result: or source_status: method, and no bare value dbt would read as a path."""
    for part in selector.replace(",", " ").split():
        body = _OPERATORS.match(part)
        value = body.group("body") if body else part
        if ":" in value:
            if value.split(":", 1)[0].split(".", 1)[0] not in _PURE_METHODS:
                return False
        elif "/" in value or "\\" in value or value.endswith((".sql", ".py", ".csv")):
            return False
    return True


def _stored_memo(key: str | None) -> dict[str, list[str]]:
    if key is None:
        return {}
    from . import dbt_cache

    stored = dbt_cache.load("selections", key)
    return stored if isinstance(stored, dict) else {}


class _FqnIndex:
    """For a wildcard-free name selector, the nodes dbt's fqn matcher could possibly accept.

    dbt (``is_selected_node``, applied to the fqn and to the fqn without its package) accepts
    a node only when the selector equals the fqn's leaf, or (versioned models) the leaf's parent
    or its last two parts joined by ``_``, or when the selector's dot-separated parts are a prefix
    of the flattened fqn, which needs the first part to equal the first flattened segment.
    Indexing those keys gives a superset of the matches; dbt's own matcher then decides.
    """

    def __init__(self, manifest: Any) -> None:
        self._by_key: dict[str, set[str]] = {}
        for uid, node in manifest.nodes.items():
            fqn = list(getattr(node, "fqn", []) or [])
            if not fqn:
                continue
            keys = {fqn[-1], fqn[0].split(".")[0]}
            if len(fqn) > 1:
                keys.add(fqn[1].split(".")[0])
                keys.add(fqn[-2])
                keys.add("_".join(fqn[-2:]))
            for k in keys:
                self._by_key.setdefault(k, set()).add(uid)

    def candidates(self, selector: str) -> set[str]:
        parts = selector.split(".")
        out: set[str] = set()
        for k in (selector, parts[0], "_".join(parts[-2:])):
            out |= self._by_key.get(k, set())
        return out


def _ensure_flags() -> None:
    """dbt's selector code reads global flags; set dbt's defaults when no dbt command ran."""
    from argparse import Namespace

    from dbt.flags import get_flags, set_from_args

    if not hasattr(get_flags(), "INDIRECT_SELECTION"):
        set_from_args(Namespace(), None)


def load_manifest(path: Path) -> Any:
    """A dbt Manifest from manifest.json(.gz); RescueError for missing or foreign files."""
    from dbt.contracts.graph.manifest import Manifest, WritableManifest

    if not path.is_file():
        raise RescueError(f"{path}: manifest not found",
                          hint="produce it with `dbt parse` (target/manifest.json) or set dbt.manifest")
    from ..graph import load_manifest_json

    data = load_manifest_json(path)  # RescueError for any shape that is not a manifest
    try:
        version = str(data.get("metadata", {}).get("dbt_schema_version", ""))
        if not WritableManifest.is_compatible_version(version):
            raise RescueError(f"{path}: manifest schema {version or '(none)'} is not supported",
                              hint="regenerate it with dbt-core 1.11 (manifest v12)")
        return Manifest.from_writable_manifest(WritableManifest.upgrade_schema_version(data))
    except RescueError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise RescueError(f"{path}: not a readable dbt manifest: {type(exc).__name__}: {_one_line(str(exc))}",
                          hint="point dbt.manifest at dbt's target/manifest.json") from exc


def manifest_as_dict(manifest: Any) -> dict[str, Any]:
    """The subset of manifest.json the graph code reads, built from the in-memory Manifest
    (serialising the whole manifest would cost seconds on large projects)."""
    from ..graph import MANIFEST_CONFIG_KEYS

    nodes: dict[str, Any] = {}
    for uid, node in manifest.nodes.items():
        cfg = node.config
        config = {k: getattr(cfg, k, None) for k in MANIFEST_CONFIG_KEYS}
        config["meta"] = dict(getattr(cfg, "meta", {}) or {})
        nodes[uid] = {
            "unique_id": uid,
            "name": node.name,
            "resource_type": str(node.resource_type),
            "package_name": node.package_name,
            "original_file_path": node.original_file_path,
            "fqn": list(getattr(node, "fqn", []) or []),
            "tags": list(node.tags),
            "meta": dict(getattr(node, "meta", {}) or {}),
            "config": config,
            "checksum": {"name": node.checksum.name, "checksum": node.checksum.checksum},
            "depends_on": {"nodes": list(getattr(node.depends_on, "nodes", []) or [])},
        }
    sources = {uid: {"unique_id": uid, "resource_type": "source", "name": s.name,
                     "checksum": {"name": "none", "checksum": ""}}
               for uid, s in manifest.sources.items()}
    parent_map = {uid: sorted(n["depends_on"]["nodes"]) for uid, n in nodes.items()}
    for uid in sources:
        parent_map[uid] = []
    return {"nodes": nodes, "sources": sources, "parent_map": parent_map,
            "metadata": {"project_name": manifest.metadata.project_name}}


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
