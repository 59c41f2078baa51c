"""Repository configuration: `rescue.yaml` at the repository root.

Decoded with the same strict loader and JSON-Schema checker as requests
(`schema_data/rescue-config.v1.json`). Relative paths are relative to the
directory holding `rescue.yaml`. Every setting has a default, so a repository
without `rescue.yaml` works with the bundled example's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .deployment_mapping import ParameterMapping
from .errors import RescueError
from .model import Finding, Severity
from .storage import Credentials, is_url

CONFIG_FILE = "rescue.yaml"


@dataclass(frozen=True)
class DbtSettings:
    """Where the dbt project lives and how dbt is invoked (target and profile are fixed here,
    never by a request)."""

    project_dir: Path
    profiles_dir: Path
    target: str | None = None
    # Locations: a local Path, or an fsspec URL string (s3://, gs://, az://); see storage.py.
    manifest: Path | str | None = None  # resolve selections against this manifest.json(.gz)
    state: Path | str | None = None  # folder holding a state manifest.json for `state:` selectors
    history: Path | str | None = None  # run_results.json files used for estimates
    adapter: str | None = None  # the dbt adapter CI installs beside rescue-runner (dbt-<adapter>)
    # Set by rescue-runner, never read from rescue.yaml: "<commit sha>:<folder>" when project_dir
    # is a folder of a clean tree of that commit written by rescue-runner (trusted.dbt_at). It
    # keys the parse cache instead of a content hash of the tree (adapters/dbt_cache.py).
    revision: str | None = None


@dataclass(frozen=True)
class ForecastSettings:
    """How the queue forecast estimates durations (``prefect.forecast``; see contention.py)."""

    default_run_minutes: float = 10.0  # a deployment (or batch) without history
    margin_percent: float = 20.0  # safety margin on a batch's estimate ...
    margin_minutes: float = 2.0  # ... at least this long
    history_runs: int = 10  # completed runs per deployment whose median is its typical duration
    horizon_hours: float = 12.0  # how far ahead scheduled runs are read


@dataclass(frozen=True)
class PrefectSettings:
    """The Prefect objects rescues run on (created by `rescue deploy`)."""

    work_pool: str = "rescue"
    work_queue: str = "dbt"
    queue_concurrency: int = 5
    deployment: str = "dbt_rerun"
    flow: str = "transform_and_catalog"
    run_results_storage_path: Path | str | None = None  # local Path or fsspec URL
    reserve_slots: int = 1  # free slots kept for scheduled work
    heavy_extra_slots: int = 1  # a heavy batch needs this many more free slots
    lookahead_minutes: int = 30  # scheduled runs due within this horizon count as contention
    mapping: ParameterMapping | None = None  # None: rescue-runner's own flow
    forecast: ForecastSettings = field(default_factory=ForecastSettings)


@dataclass(frozen=True)
class StorageSettings:
    """How remote locations are read (storage.py). Credentials are never values here."""

    credentials_block: str | None = None  # a Prefect Secret block holding fsspec storage options
    cache_dir: Path | None = None  # local copies of remote history and manifests
    history_files: int = 200  # the newest run results files read from dbt.history

    def credentials(self) -> Credentials:
        return Credentials(self.credentials_block)


@dataclass(frozen=True)
class RepositorySettings:
    """The repository flow runs build from (an exact commit of it, fetched by SHA on the worker)."""

    url: str | None = None  # None: the URL of audit.remote in the runner's clone
    token_secret: str | None = None  # Prefect Secret block with the token, read on the worker


@dataclass(frozen=True)
class AuditSettings:
    """Where approvals come from and where the audit trail goes."""

    remote: str = "origin"
    protected_branch: str = "main"
    branch: str = "rescue-audit"


@dataclass(frozen=True)
class LinkSettings:
    """Web links shown in Prefect artifacts (``links:``); nothing is linked without a repository URL."""

    repository_url: str | None = None


NOTIFY_EVENTS = ("waiting_too_long", "failed", "needs_operator", "succeeded", "running_long", "stale_on_main")


@dataclass(frozen=True)
class NotificationSettings:
    """Where chat alerts go (rescue_runner.notify). The URL itself lives in the environment."""

    webhook_url_env: str = "RESCUE_WEBHOOK_URL"
    on: tuple[str, ...] = NOTIFY_EVENTS
    waiting_too_long_minutes: float = 120.0
    timeout_seconds: float = 5.0
    retries: int = 2


@dataclass(frozen=True)
class LivenessSettings:
    """Dead and overlong runs: Prefect heartbeats, the crash automation, the running-long alert."""

    heartbeat_seconds: int = 30
    missed_heartbeats: float = 3.0
    running_long_factor: float = 3.0
    running_long_minimum_minutes: float = 10.0

    @property
    def crash_after_seconds(self) -> float:
        """A running flow run without a heartbeat for this long is marked CRASHED."""
        return self.heartbeat_seconds * self.missed_heartbeats


@dataclass(frozen=True)
class Config:
    """The whole repository configuration."""

    root: Path
    requests_dir: Path
    dbt: DbtSettings
    prefect: PrefectSettings = field(default_factory=PrefectSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    repository: RepositorySettings = field(default_factory=RepositorySettings)
    policy: Mapping[str, Any] = field(default_factory=dict)
    links: LinkSettings = field(default_factory=LinkSettings)
    notifications: NotificationSettings | None = None  # None: no `notifications:` section, nothing is sent
    liveness: LivenessSettings = field(default_factory=LivenessSettings)
    source: str | None = None  # display path of rescue.yaml, or None when defaulted
    content_hash: str = ""


def _path(root: Path, value: Any) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(str(value))
    return p if p.is_absolute() else (root / p)


def _location(root: Path, value: Any) -> Path | str | None:
    """A URL stays a string (storage.py reads it); a path is made absolute against ``root``."""
    if isinstance(value, str) and is_url(value):
        return value
    return _path(root, value)


def config_from_data(root: Path, data: Mapping[str, Any], *, source: str | None = None,
                     content_hash: str = "") -> Config:
    """Build a Config from schema-valid data (defaults filled in)."""
    dbt = dict(data.get("dbt") or {})
    project_dir = _path(root, dbt.get("project_dir", ".")) or root
    profiles_dir = _path(root, dbt.get("profiles_dir")) or project_dir
    pre = dict(data.get("prefect") or {})
    aud = dict(data.get("audit") or {})
    sto = dict(data.get("storage") or {})
    return Config(
        root=root,
        requests_dir=_path(root, data.get("requests_dir", "rescues")) or root / "rescues",
        dbt=DbtSettings(
            project_dir=project_dir,
            profiles_dir=profiles_dir,
            target=dbt.get("target"),
            manifest=_location(root, dbt.get("manifest")),
            state=_location(root, dbt.get("state")),
            # history_dir: the earlier name of `history`, still read.
            history=_location(root, dbt.get("history", dbt.get("history_dir"))),
            adapter=dbt.get("adapter"),
        ),
        prefect=PrefectSettings(
            **{k: v for k, v in pre.items() if k not in ("run_results_storage_path", "forecast", "mapping")},
            mapping=ParameterMapping.from_data(pre["mapping"]) if pre.get("mapping") else None,
            forecast=ForecastSettings(**dict(pre.get("forecast") or {})),
            run_results_storage_path=_location(root, pre.get("run_results_storage_path", ".rescue/runs")),
        ),
        storage=StorageSettings(
            credentials_block=sto.get("credentials_block"),
            cache_dir=_path(root, sto.get("cache_dir", ".rescue/cache")),
            history_files=int(sto.get("history_files", 200)),
        ),
        audit=AuditSettings(**aud),
        repository=RepositorySettings(**dict(data.get("repository") or {})),
        policy=dict(data.get("policy") or {}),
        links=LinkSettings(**dict(data.get("links") or {})),
        notifications=_notifications(data.get("notifications")),
        liveness=LivenessSettings(**dict(data.get("liveness") or {})),
        source=source,
        content_hash=content_hash,
    )


def _notifications(data: Mapping[str, Any] | None) -> NotificationSettings | None:
    if data is None:
        return None
    values: dict[str, Any] = {k: tuple(v) if k == "on" else v for k, v in data.items()}
    return NotificationSettings(**values)


def find_config(start: Path) -> Path | None:
    """The nearest `rescue.yaml` in ``start`` or its parents."""
    start = start.resolve()
    for d in (start, *start.parents):
        candidate = d / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def parse_config_text(text: bytes | str, root: Path, display: str) -> tuple[Config | None, list[Finding]]:
    """Decode configuration content (from a file or from a git ref) into a Config."""
    from .loader import load_text
    from .schema import validate_against_schema

    doc, findings = load_text(text, display)
    if doc is None:
        return None, findings
    findings = findings + validate_against_schema(doc, "rescue-config.v1.json")
    if any(f.blocking for f in findings):
        return None, findings
    from .policies import policy_from_config
    from .policy import PolicyError

    try:  # what the schema cannot check (IANA zones, known rule codes), located at its line
        policy_from_config(doc.data.get("policy"))
    except PolicyError as exc:
        return None, [*findings, Finding("RR010", Severity.ERROR, f"{exc.message}; see docs/policy.md",
                                         display, doc.line_of(exc.where) or 1)]
    return config_from_data(root, doc.data, source=display, content_hash=doc.content_hash), findings


def load_config(path: Path | None, *, cwd: Path | None = None) -> Config:
    """Load `rescue.yaml` (found upwards from ``cwd`` when ``path`` is None).

    Raises RescueError (exit 2) with every located problem when the file is invalid.
    """
    cwd = cwd or Path.cwd()
    if path is None:
        path = find_config(cwd)
        if path is None:
            return config_from_data(cwd.resolve(), {})
    if not path.is_file():
        raise RescueError(f"{path}: configuration file not found",
                          hint="pass --config PATH or run `rescue init` to create rescue.yaml")
    display = _display(path, cwd)
    cfg, findings = parse_config_text(path.read_bytes(), path.resolve().parent, display)
    if cfg is None:
        lines = "\n".join(f"  {f.path}:{f.line or 1}: {f.code} {f.message}" for f in findings if f.blocking)
        raise RescueError(f"{display}: invalid configuration\n{lines}",
                          hint="fix rescue.yaml; see docs/configuration.md")
    return cfg


def _display(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)
