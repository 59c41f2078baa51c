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

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RescueError
from ..model import ProjectGraph

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


class SelectionError(Exception):
    """dbt refused a selector (unknown method, missing state, bad syntax)."""


@dataclass
class DbtProject:
    """A dbt Manifest loaded once, with its linked graph, ready for many selections."""

    manifest: Any
    project_root: Path
    state_dir: Path | None
    source: str
    _graph: Any = None
    _selector: Any = None
    _project_graph: ProjectGraph | None = None

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def from_project(cls, project_dir: Path, profiles_dir: Path, target: str | None = None,
                     state_dir: Path | None = None) -> DbtProject:
        """Parse the project once with dbt (partial parsing applies). Raises RescueError."""
        if not (project_dir / "dbt_project.yml").is_file():
            raise RescueError(f"{project_dir}: no dbt_project.yml here",
                              hint="set dbt.project_dir in rescue.yaml or pass --project-dir")
        if not (profiles_dir / "profiles.yml").is_file():
            raise RescueError(f"{profiles_dir}: no profiles.yml here",
                              hint="set dbt.profiles_dir in rescue.yaml or pass --profiles-dir")
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
        return cls(res.result, project_dir.resolve(), state_dir, f"project {project_dir}")

    @classmethod
    def from_manifest(cls, manifest_path: Path, project_root: Path | None = None,
                      state_dir: Path | None = None) -> DbtProject:
        """Load a manifest.json or manifest.json.gz (a production artifact). Raises RescueError."""
        manifest = load_manifest(manifest_path)
        _ensure_flags()
        root = (project_root or manifest_path.parent).resolve()
        return cls(manifest, root, state_dir, f"manifest {manifest_path}")

    # ---- selection -----------------------------------------------------------------------

    def _ensure_selector(self) -> Any:
        if self._selector is None:
            from dbt.compilation import Linker
            from dbt.graph.graph import Graph
            from dbt.graph.selector import ResourceTypeSelector
            from dbt.node_types import NodeType

            linker = Linker()
            linker.find_cycles = lambda: None  # type: ignore[method-assign]
            linker.link_graph(self.manifest)
            self._graph = Graph(linker.graph)
            fqn_index = _FqnIndex(self.manifest)

            class _MemoSelector(ResourceTypeSelector):
                """dbt's selector, remembering each method search (the costly part: a scan of
                every node) for the run; graph operators and set logic still run per call."""

                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    super().__init__(*args, **kwargs)
                    self._memo: dict[tuple[Any, ...], set[Any]] = {}

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
                graph=self._graph, manifest=self.manifest, previous_state=self._previous_state(),
                resource_types=[NodeType.Model], include_empty_nodes=True)
        return self._selector

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
        from dbt.graph.cli import parse_difference

        selector = self._ensure_selector()
        try:
            with self._project_root_context():
                spec = parse_difference(list(select), list(exclude) or None)
                return set(selector.get_selected(spec))
        except RescueError:
            raise
        except Exception as exc:  # dbt raises a zoo of exception types for bad selectors
            raise SelectionError(_one_line(str(exc))) from exc

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
    from ..graph import CONFIG_KEYS

    nodes: dict[str, Any] = {}
    for uid, node in manifest.nodes.items():
        cfg = node.config
        config = {k: getattr(cfg, k, None) for k in CONFIG_KEYS}
        config["meta"] = dict(getattr(cfg, "meta", {}) or {})
        nodes[uid] = {
            "unique_id": uid,
            "name": node.name,
            "resource_type": str(node.resource_type),
            "package_name": node.package_name,
            "original_file_path": node.original_file_path,
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
