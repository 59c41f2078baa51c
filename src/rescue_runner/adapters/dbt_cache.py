"""A disk cache of loaded dbt manifests: one parse or one manifest load per commit, not per run.

Loading dbt's view of a project costs seconds (a ``dbt parse``, or reading a production
``manifest.json`` of thousands of nodes) and every ``rescue validate``, cron tick and flow run
would pay it again for the same input. The cache keeps the loaded ``Manifest`` (and what
selection derives from it) as a pickle, found again by a key that names everything the
result depends on:

* a manifest file: the sha256 of its bytes;
* a parse: the commit SHA the project directory holds (when the caller knows it, e.g. a
  clean checkout of the approved commit) or else a content hash of the project tree, plus
  the profiles.yml content, the target, the values of the environment variables that
  ``profiles.yml`` and ``dbt_project.yml`` read, and the vars;

and always the dbt-core version, the Python version and this cache's format version.
A manifest whose models read environment variables records their values (dbt's
``manifest.env_vars``); a cached parse whose recorded values differ from the environment is
not used. A different commit or configuration therefore never reuses an entry.

Safety: entries are written atomically (temp file + rename), carry their key and a sha256 of
their payload, and are read only from a directory owned by this user and not writable by
others. An entry that is corrupt, foreign (another key or format) or unreadable is ignored
and rebuilt; the cache is only ever a speed-up: with ``RESCUE_CACHE=off`` nothing is read or
written and every result is the same.

Location: ``$RESCUE_CACHE_DIR``, else ``$XDG_CACHE_HOME/rescue-runner``, else
``~/.cache/rescue-runner``. Each kind keeps its newest ``KEEP`` entries.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import json
import os
import pickle
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

FORMAT = 1
MAGIC = b"rescue-runner-cache\n"
KEEP = 8  # entries per kind
DIR_ENV, SWITCH_ENV = "RESCUE_CACHE_DIR", "RESCUE_CACHE"
# Not part of the project as dbt parses it (outputs, installed-package caches are kept: dbt reads them).
_SKIP_DIRS = frozenset({".git", "target", "logs", "__pycache__", ".rescue", ".venv", "node_modules"})
_SKIP_SUFFIXES = (".duckdb", ".duckdb.wal", ".pyc", ".msgpack")
_unfreeze_at_exit = False
_ENV_VAR = re.compile(r"""env_var\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in ("off", "0", "false", "no")


def cache_dir() -> Path:
    """Where entries live (see the module docs)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rescue-runner"


# ---- keys --------------------------------------------------------------------------------------

def _dbt_version() -> str:
    from importlib.metadata import version

    try:
        return version("dbt-core")
    except Exception:  # not installed as a distribution: no cache entry can be trusted to match
        return "unknown"


def _key(kind: str, parts: Mapping[str, Any]) -> str:
    blob = json.dumps({"format": FORMAT, "kind": kind, "dbt": _dbt_version(),
                       "python": sys.version_info[:3], **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_key(path: Path) -> str | None:
    """The key of a manifest file: its content, whatever its name or place (None when the cache
    is off or the file cannot be read: loading it then reports the problem)."""
    if not enabled() or not path.is_file():
        return None
    try:
        return _key("manifest", {"sha256": file_sha256(path)})
    except OSError:
        return None


def tree_hash(project_dir: Path) -> str:
    """sha256 over the relative paths and contents of the files dbt reads in a project tree
    (build outputs, logs, warehouses and VCS data left out)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(project_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel = Path(dirpath).relative_to(project_dir).as_posix()
        for name in sorted(filenames):
            if name.endswith(_SKIP_SUFFIXES):
                continue
            full = Path(dirpath) / name
            try:
                data = full.read_bytes()
            except OSError:
                data = b"\0unreadable"
            h.update(f"{rel}/{name}\0{len(data)}\0".encode())
            h.update(data)
    return h.hexdigest()


def parse_key(project_dir: Path, profiles_dir: Path, target: str | None, *, revision: str | None = None,
              vars: Mapping[str, Any] | None = None) -> str:
    """The key of a parse of ``project_dir``: ``revision`` (the commit SHA the directory holds
    exactly, when known) or the tree's content hash, plus profile, target, environment and vars."""
    profiles = profiles_dir / "profiles.yml"
    profiles_text = profiles.read_text(encoding="utf-8", errors="replace") if profiles.is_file() else ""
    project_text = (project_dir / "dbt_project.yml").read_text(encoding="utf-8", errors="replace")
    names = sorted(set(_ENV_VAR.findall(profiles_text)) | set(_ENV_VAR.findall(project_text)))
    # Values only as hashes: the key is stored in every entry's header.
    env = {n: hashlib.sha256(os.environ.get(n, "\0unset").encode()).hexdigest() for n in names}
    tree = f"git:{revision}" if revision else f"tree:{tree_hash(project_dir)}"
    return _key("parse", {"tree": tree, "profiles": hashlib.sha256(profiles_text.encode()).hexdigest(),
                          "target": target, "env": env, "vars": dict(vars or {})})


def env_vars_match(manifest: Any) -> bool:
    """True when every environment variable the parse read (``manifest.env_vars``) still has the
    value it had then; dbt's partial parsing applies the same test."""
    recorded = getattr(manifest, "env_vars", None) or {}
    return all(os.environ.get(k) == v for k, v in recorded.items()
               if not str(v).startswith("DBT_ENV_SECRET"))


# ---- entries -----------------------------------------------------------------------------------

def _safe_dir(path: Path) -> bool:
    """Read only from our own directory that nobody else can write into."""
    try:
        st = path.stat()
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    # Unpickling a manifest allocates ~10^6 long-lived objects: the cyclic collector would run
    # hundreds of times during the load, then scan them all again in the next full collection,
    # for nothing (measured on the GitLab manifest: 2.4 s -> 0.4 s). Freezing moves what exists
    # now out of the collector's sight, as Python's docs suggest for data loaded at start-up.
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.enable()
            global _unfreeze_at_exit
            if not _unfreeze_at_exit:  # let interpreter shutdown see them again (extension
                atexit.register(gc.unfreeze)  # modules such as duckdb's report "leaks" otherwise)
                _unfreeze_at_exit = True


def load(kind: str, key: str) -> Any | None:
    """The payload stored under ``key``, or None (disabled, absent, unsafe, corrupt or foreign)."""
    if not enabled():
        return None
    folder = cache_dir() / kind
    path = folder / f"{key}.pickle"
    if not _safe_dir(folder) or not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a cache entry")
            header = json.loads(fh.readline())
            if header.get("format") != FORMAT or header.get("key") != key:
                raise ValueError("foreign entry")
            payload = fh.read()
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise ValueError("corrupt entry")
        with _no_gc():
            value = pickle.loads(payload)  # our own entry, checked above (module docs)
    except Exception:  # a bad entry is a miss; it is replaced by the next store
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # newest use first when pruning
    return value


def store(kind: str, key: str, value: Any) -> bool:
    """Write ``value`` under ``key`` atomically; False (and nothing written) when it cannot be."""
    if not enabled():
        return False
    folder = cache_dir() / kind
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _safe_dir(folder):
            return False
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        header = json.dumps({"format": FORMAT, "key": key, "sha256": hashlib.sha256(payload).hexdigest(),
                             "dbt": _dbt_version()}).encode()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(MAGIC + header + b"\n")
                fh.write(payload)
            os.replace(tmp, folder / f"{key}.pickle")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _prune(folder)
        return True
    except Exception:  # a full disk or an unpicklable object costs speed, never correctness
        return False


def _prune(folder: Path) -> None:
    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    entries = sorted(folder.glob("[!.]*.pickle"), key=mtime, reverse=True)
    for old in entries[KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()


# ---- the parse cache ---------------------------------------------------------------------------

def default_profiles_dir(project_dir: Path, profiles_dir: str | Path | None) -> Path:
    """The folder dbt reads profiles.yml from: the given one, else the project's, else ~/.dbt."""
    if profiles_dir:
        return Path(profiles_dir)
    if (Path(project_dir) / "profiles.yml").is_file():
        return Path(project_dir)
    return Path.home() / ".dbt"


def tree_revision(project: Any) -> str | None:
    """The revision key of a project folder inside a clean tree of a commit: ``<sha>:<folder>``
    from a flow summary's ``project`` entry ({"commit", "path"}), else None (hash the tree)."""
    if not isinstance(project, Mapping) or not project.get("commit"):
        return None
    return f"{project['commit']}:{project.get('path') or '.'}"


def project_key(project_dir: Path, profiles_dir: str | Path | None, target: str | None, *,
                revision: str | None = None, vars: Mapping[str, Any] | None = None) -> str | None:
    """``parse_key`` with dbt's default profiles dir; None when the cache is off or a file
    cannot be read (dbt's own parse then reports it properly)."""
    if not enabled():
        return None
    try:
        return parse_key(Path(project_dir), default_profiles_dir(Path(project_dir), profiles_dir), target,
                         revision=revision, vars=vars)
    except OSError:
        return None


def env_of(manifest: Any) -> dict[str, str]:
    """The environment variables a parse read (``manifest.env_vars``), values hashed."""
    recorded = getattr(manifest, "env_vars", None) or {}
    return {str(k): hashlib.sha256(str(v).encode()).hexdigest() for k, v in recorded.items()
            if not str(v).startswith("DBT_ENV_SECRET")}


def env_matches(hashed: Any) -> bool:
    """True when every variable in ``env_of``'s answer still has the value it had then."""
    if not isinstance(hashed, dict):
        return False
    return all(k in os.environ and hashlib.sha256(os.environ[k].encode()).hexdigest() == v
               for k, v in hashed.items())


def cached_parse(project_dir: Path, profiles_dir: str | Path | None, target: str | None,
                 parse: Callable[[], Any], *, revision: str | None = None,
                 vars: Mapping[str, Any] | None = None,
                 key: str | None = None) -> tuple[Any, str, str | None]:
    """The Manifest of ``project_dir``: from the cache when this exact input was parsed before,
    else from ``parse()`` (then stored). Returns it, how it was obtained ("cache" | "parsed")
    and the cache key (None when the cache is off). ``key``: ``project_key``'s answer, if known."""
    if key is None:
        key = project_key(project_dir, profiles_dir, target, revision=revision, vars=vars)
    if key is not None:
        cached = load("parse", key)
        if isinstance(cached, dict) and "manifest" in cached and env_vars_match(cached["manifest"]):
            return cached["manifest"], "cache", key
    manifest = parse()
    if key is not None:
        store("parse", key, {"manifest": manifest})
    return manifest, "parsed", key
