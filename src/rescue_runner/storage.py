"""Storage by URL: run history, manifests and run artifacts where production keeps them.

A location in rescue.yaml (``dbt.history``, ``dbt.manifest``, ``dbt.state``,
``prefect.run_results_storage_path``) is a local path or an fsspec URL: ``s3://``,
``gs://``, ``az://`` (``abfs://``), ``file://``. The filesystem packages are optional
extras (``rescue-runner[s3]``, ``[gcs]``, ``[azure]``).

Credentials never come from rescue.yaml values or flow parameters: the filesystem
package reads them from the environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_*``, instance roles), or ``storage.credentials_block`` names a Prefect
Secret block whose JSON value holds the fsspec storage options.

Remote files are copied into a local cache (``storage.cache_dir``) keyed by URL and
validated by ETag/size/mtime, so a CI job that restores the cache fetches only what
changed. Every failure is a :class:`StorageError` (exit 2) of one line naming the
location (credentials in URLs are never shown) and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .errors import RescueError
from .redact import redact, redact_url

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# URL scheme -> the extra that installs its filesystem package.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
          "abfss": "azure", "adl": "azure"}
# Short timeouts and few retries: an unreachable endpoint is an error in seconds, not minutes.
_S3_DEFAULTS: dict[str, Any] = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 60,
                                                  "retries": {"max_attempts": 3}}}
CACHE_INDEX = ".rescue-cache.json"
CREDENTIALS_BLOCK_ENV = "RESCUE_STORAGE_CREDENTIALS_BLOCK"  # a block *name*, never a credential
# Files a dbt target folder or a rescue run folder holds besides run results: expected, not read.
COMPANIONS = frozenset({"manifest.json", "catalog.json", "summary.json", "sources.json",
                        "semantic_manifest.json", "perf_info.json", "graph_summary.json",
                        "partial_parse.msgpack", "graph.gpickle", CACHE_INDEX})


class StorageError(RescueError):
    """Storage unreachable, credentials missing or refused, a missing or malformed artifact."""


def is_url(value: str | Path) -> bool:
    """True for ``scheme://...`` (any scheme, ``file://`` included)."""
    return isinstance(value, str) and bool(_URL.match(value))


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def display(location: str | Path) -> str:
    """A location safe to print (user info and token-like query values of a URL removed)."""
    return redact_url(str(location))


def local_path(location: str | Path) -> Path | None:
    """The local path a location means (``file://`` URLs included); None for remote URLs."""
    if isinstance(location, Path):
        return location
    if not is_url(location):
        return Path(location)
    if scheme(location) == "file":
        return Path(urlsplit(location).path)
    return None


def join(location: str | Path, *parts: str) -> str | Path:
    """``location/part/...`` for a path or a URL."""
    local = local_path(location)
    if local is not None and not is_url(location):
        return local.joinpath(*parts)
    return "/".join([str(location).rstrip("/"), *parts])


@dataclass(frozen=True)
class Credentials:
    """Where storage credentials come from: the environment, or a named Prefect Secret block."""

    block: str | None = None
    _options: dict[str, Any] | None = field(default=None, repr=False, compare=False, hash=False)

    def options(self, url: str) -> dict[str, Any]:
        """fsspec storage options for ``url`` (loaded from the block once; never printed)."""
        opts: dict[str, Any] = json.loads(json.dumps(_S3_DEFAULTS)) if scheme(url) in ("s3", "s3a") else {}
        if self.block:
            if self._options is None:
                object.__setattr__(self, "_options", _block_options(self.block))
            assert self._options is not None
            opts.update(self._options)
        return opts


def _block_options(name: str) -> dict[str, Any]:
    try:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(name)
        value = block.get()
    except Exception as exc:
        raise StorageError(f"storage credentials: could not load the Prefect Secret block {name!r} "
                           f"({type(exc).__name__})",
                           hint="create it (`prefect block create secret`) with a JSON object of fsspec "
                           "storage options, or remove storage.credentials_block and use the "
                           "environment") from None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if not isinstance(value, dict):
        raise StorageError(f"storage credentials: the Prefect Secret block {name!r} does not hold a "
                           "JSON object", hint='store e.g. {"key": "...", "secret": "..."} for s3://')
    return value


def filesystem(url: str, credentials: Credentials | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for a URL; StorageError when its package is missing."""
    import fsspec

    opts = (credentials or Credentials()).options(url)
    try:
        return fsspec.core.url_to_fs(url, **opts)
    except ImportError:
        extra = EXTRAS.get(scheme(url))
        hint = (f"pip install 'rescue-runner[{extra}]'" if extra
                else "install the fsspec filesystem package for this scheme")
        raise StorageError(f"{display(url)}: no filesystem package for {scheme(url)}://", hint=hint) from None
    except ValueError as exc:
        raise StorageError(f"{display(url)}: not a storage URL fsspec knows ({_one_line(exc)})",
                           hint="use a local path or an s3://, gs://, az:// or file:// URL") from None


def translate(exc: BaseException, location: str | Path, doing: str) -> StorageError:
    """One line for a filesystem failure: unreachable, credentials, not found, or other."""
    name = type(exc).__name__
    where = display(location)
    text = _one_line(exc)
    if isinstance(exc, StorageError):
        return exc
    if name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError",
                "ClientAuthenticationError", "CredentialRetrievalError") or "credential" in text.lower():
        return StorageError(f"{where}: no credentials to {doing} ({name})",
                            hint="set the storage credentials in the environment (e.g. "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, "
                            "AZURE_STORAGE_*) or name a Prefect Secret block in storage.credentials_block")
    if isinstance(exc, PermissionError) or name in ("AccessDenied", "Forbidden", "HttpResponseError"):
        return StorageError(f"{where}: access denied to {doing} ({text})",
                            hint="check the credentials' permissions on this location")
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{where}: not found", hint="check the location in rescue.yaml")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionError",
                "ClientConnectorError", "ServerTimeoutError", "ReadTimeoutError") \
            or isinstance(exc, ConnectionError | TimeoutError):
        return StorageError(f"{where}: storage unreachable ({text})",
                            hint="check the network, the endpoint (AWS_ENDPOINT_URL) and the URL in "
                            "rescue.yaml")
    return StorageError(f"{where}: could not {doing} ({name}: {text})",
                        hint="check the location and credentials")


@contextlib.contextmanager
def errors(location: str | Path, doing: str) -> Iterator[None]:
    """Turn any filesystem exception inside the block into one StorageError."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        raise translate(exc, location, doing) from None


# ---- reading: a cached local copy of remote files ----------------------------------------

def cache_dir_for(cache_root: Path, url: str) -> Path:
    """The cache folder of one remote location (by URL, credentials stripped)."""
    digest = hashlib.sha256(display(url).encode()).hexdigest()[:16]
    return cache_root / "storage" / digest


def _token(info: Mapping[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "content_md5", "LastModified", "last_modified", "mtime",
                "updated", "created"):
        if info.get(key) is not None:
            return f"{key}={info[key]}:{info.get('size')}"
    return f"size={info.get('size')}"


class _Cache:
    """A folder of downloaded files plus an index of their remote tokens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index_path = root / CACHE_INDEX
        try:
            self.index: dict[str, str] = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.index = {}
        self.fetched = 0

    def get(self, fs: Any, remote: str, rel: str, token: str) -> Path:
        dest = self.root / rel
        if self.index.get(rel) == token and dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        fs.get_file(remote, str(tmp))
        tmp.replace(dest)
        self.index[rel] = token
        self.fetched += 1
        return dest

    def prune(self, keep: set[str]) -> None:
        for rel in list(self.index):
            if rel not in keep:
                with contextlib.suppress(OSError):
                    (self.root / rel).unlink()
                del self.index[rel]

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_name(CACHE_INDEX + ".tmp")
        tmp.write_text(json.dumps(self.index, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(self.index_path)


def fetch_file(location: str | Path, cache_root: Path, credentials: Credentials | None = None) -> Path:
    """A local path holding the file at ``location`` (downloaded into the cache when remote)."""
    local = local_path(location)
    if local is not None:
        return local
    url = str(location)
    fs, path = filesystem(url, credentials)
    cache = _Cache(cache_dir_for(cache_root, url))
    with errors(url, "read"):
        info = fs.info(path)
        if info.get("type") == "directory":
            raise StorageError(f"{display(url)}: a folder, not a file", hint="point at the file itself")
        dest = cache.get(fs, path, PurePosixPath(path).name, _token(info))
    cache.save()
    return dest


def fetch_state(location: str | Path, cache_root: Path, credentials: Credentials | None = None) -> Path:
    """A local folder holding the state ``manifest.json`` of ``location`` (a folder)."""
    local = local_path(location)
    if local is not None:
        return local
    manifest = fetch_file(join(location, "manifest.json"), cache_root, credentials)
    return manifest.parent


@dataclass(frozen=True)
class HistorySync:
    """The outcome of reading a history location: local files to read and what happened."""

    folder: Path  # local folder holding exactly the selected files
    files: int
    fetched: int  # downloaded this time (the rest came from the cache)
    skipped: tuple[str, ...] = ()  # warnings: files seen but not used, with the reason


def is_history_candidate(name: str) -> bool:
    """Whether a file in a history location is read as run results (every other file is named
    in a warning, except dbt's and rescue-runner's known companions)."""
    return name.endswith((".json", ".json.gz")) and name not in COMPANIONS


def sync_history(location: str | Path, cache_root: Path, credentials: Credentials | None = None,
                 *, max_files: int = 200) -> HistorySync:
    """Copy the newest ``max_files`` run-results files of a remote history location into its cache.

    Any ``*.json``/``*.json.gz`` counts (``run_results*.json``, ``<run id>/run_results.json`` or
    another name); dbt's companion artifacts (manifest, catalog, summary...) are expected and
    not read; any other file is reported. Files already cached with the same ETag are not
    downloaded again; files gone from the location (or no longer among the newest) leave the cache.
    """
    url = str(location)
    fs, path = filesystem(url, credentials)
    cache = _Cache(cache_dir_for(cache_root, url))
    with errors(url, "list the run history"):
        if not fs.exists(path):
            raise FileNotFoundError(path)
        listing = fs.find(path, detail=True)
    base = path.rstrip("/")
    candidates: list[tuple[str, str, Mapping[str, Any]]] = []
    skipped: list[str] = []
    for remote, info in sorted(listing.items()):
        if info.get("type") == "directory":
            continue
        rel = remote[len(base):].lstrip("/") if remote.startswith(base) else PurePosixPath(remote).name
        name = PurePosixPath(rel).name
        if name in COMPANIONS or name.endswith(".log"):  # dbt.log beside a run's artifacts
            continue
        if not is_history_candidate(name):
            skipped.append(f"{rel}: skipped, not a JSON run results file")
            continue
        candidates.append((remote, rel, info))
    candidates.sort(key=lambda c: (_when(c[2]), c[1]), reverse=True)
    if len(candidates) > max_files:
        skipped.append(f"{len(candidates) - max_files} older file(s) not read (storage.history_files: "
                       f"{max_files} newest)")
    chosen = candidates[:max_files]
    with errors(url, "read the run history"):
        for remote, rel, info in chosen:
            cache.get(fs, remote, rel, _token(info))
    cache.prune({rel for _, rel, _ in chosen})
    cache.save()
    return HistorySync(cache.root, len(chosen), cache.fetched, tuple(skipped))


def _when(info: Mapping[str, Any]) -> float:
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        if isinstance(value, int | float):
            return float(value)
        with contextlib.suppress(ValueError):
            from datetime import datetime

            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return 0.0


def read_json(location: str | Path, credentials: Credentials | None = None) -> Any:
    """The JSON document at ``location``; StorageError (never a traceback) when it cannot be read."""
    local = local_path(location)
    try:
        if local is not None:
            return json.loads(local.read_text(encoding="utf-8"))
        url = str(location)
        fs, path = filesystem(url, credentials)
        with errors(url, "read"):
            return json.loads(fs.cat_file(path).decode("utf-8"))
    except StorageError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise StorageError(f"{display(location)}: malformed JSON ({_one_line(exc)})") from None
    except OSError as exc:
        raise translate(exc, location, "read") from None


# ---- writing: a flow run's artifacts ----------------------------------------------------

class RunArtifacts:
    """Where one flow run writes its artifacts: ``<storage>/<flow run id>/``.

    ``local_dir`` is where the run writes; for a remote storage it is a temporary folder whose
    files :meth:`publish` uploads (then removes). For a local storage it is the final folder.
    """

    def __init__(self, storage: str | Path, run_id: str, credentials: Credentials | None = None) -> None:
        self.location = join(storage, run_id)
        self.credentials = credentials
        local = local_path(storage)
        self.remote = local is None
        if local is None:
            self.local_dir = Path(tempfile.mkdtemp(prefix="rescue-artifacts-"))
        else:
            self.local_dir = local / run_id
            self.local_dir.mkdir(parents=True, exist_ok=True)

    def publish(self) -> list[str]:
        """Upload every file written so far (remote storage); the uploaded locations."""
        if not self.remote:
            return [str(p) for p in sorted(self.local_dir.iterdir()) if p.is_file()]
        url = str(self.location)
        fs, path = filesystem(url, self.credentials)
        done = []
        with errors(url, "write the run's artifacts"):
            # summary.json last: a reader that sees it can rely on the others being there.
            for p in sorted(self.local_dir.iterdir(), key=lambda p: (p.name == "summary.json", p.name)):
                if p.is_file():
                    fs.put_file(str(p), f"{path.rstrip('/')}/{p.name}")
                    done.append(f"{display(url)}/{p.name}")
        return done

    def cleanup(self) -> None:
        if self.remote:
            shutil.rmtree(self.local_dir, ignore_errors=True)


def credentials_from_env() -> Credentials:
    """The worker side: ``RESCUE_STORAGE_CREDENTIALS_BLOCK`` names the block (set by `rescue deploy`
    from rescue.yaml), else the filesystem package reads the environment."""
    return Credentials(os.environ.get(CREDENTIALS_BLOCK_ENV) or None)


def _one_line(exc: BaseException | str) -> str:
    text = redact(" ".join(str(exc).split()))
    return text if len(text) <= 300 else text[:297] + "..."
