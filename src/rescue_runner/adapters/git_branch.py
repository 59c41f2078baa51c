"""The approved requests: request files on the protected branch, read from git objects only.

Approved means merged: the runner reads ``rescue.yaml`` and the requests folder from the
tip of ``<remote>/<protected branch>`` as fetched by the audit store, never from the working
tree. Merge order is the order of the first-parent commits of that branch that added each
file (a merge commit counts as adding what it brings in).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path, PurePosixPath

from ..config import CONFIG_FILE, Config, find_config
from ..errors import RescueError
from ..model import Request
from ..reconcile import Approved
from .git_audit import GitAuditStore, GitRemote

# Injected by the caller (``operate.approved_source``), so this adapter reads git and nothing
# else: rescue.yaml of a commit, and the pipeline's judgement of one file's content.
ConfigAt = Callable[[str, Path], Config]  # (commit, path of rescue.yaml) -> that commit's config
Judge = Callable[[bytes, str, Config, datetime], tuple[Request | None, str | None]]  # (request, expired)

MAX_REQUEST_BYTES = 1 << 20
_SUFFIXES = (".yaml", ".yml")
_SYMLINK = 0o120000
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


class GitApprovedSource:
    """Approved requests as of the protected branch tip fetched by ``store.refresh()``."""

    def __init__(self, remote: GitRemote, store: GitAuditStore, branch: str, *, cwd: Path,
                 config_path: Path | None, now: Callable[[], datetime], config_at: ConfigAt, judge: Judge,
                 say: Callable[[str], None] = lambda line: None) -> None:
        self.remote, self.store, self.branch = remote, store, branch
        self._config_at, self._judge = config_at, judge
        self.cwd, self.config_path, self._now, self.say = cwd, config_path, now, say
        self._sha: str | None = None
        self._config: Config | None = None
        self._files: list[tuple[str, str, bytes, int, str]] = []  # (id, path, content, order, commit)
        self._warned: set[str] = set()

    @property
    def tip(self) -> str:
        sha = self.store.tips.get(self.branch)
        if sha is None:
            raise RescueError(f"branch {self.branch} does not exist on remote {self.remote.name}",
                              hint="set audit.protected_branch in rescue.yaml")
        return sha

    def config(self) -> Config:
        """rescue.yaml as it is on the protected branch (paths still mean this clone)."""
        self._load()
        assert self._config is not None
        return self._config

    def approved(self) -> list[Approved]:
        self._load()
        now = self._now()
        cfg = self.config()
        out = []
        for rid, path, content, order, commit in self._files:
            request, expired = self._judge(content, path, cfg, now)
            content_hash = "sha256:" + hashlib.sha256(content).hexdigest()
            out.append(Approved(request_id=rid, path=path, content=content, content_hash=content_hash,
                                merge_order=order, commit=commit, approved_sha=self._sha or "",
                                request=request, expired=expired))
        return out

    # -- loading (cached per branch tip) --

    def _load(self) -> None:
        sha = self.tip
        if sha == self._sha:
            return
        if not self.remote.has_object(sha):
            self.remote.fetch_ref(f"refs/heads/{self.branch}")
        cfg_path = self.config_path or find_config(self.cwd) or self.remote.root / CONFIG_FILE
        cfg = self._config_at(sha, cfg_path)
        try:
            rel = cfg.requests_dir.resolve().relative_to(self.remote.root).as_posix()
        except ValueError:
            raise RescueError(f"{cfg.requests_dir}: the requests folder is outside the repository") from None
        commit = self.remote.repo.commit(sha)
        try:
            folder = commit.tree / rel if rel not in ("", ".") else commit.tree
        except KeyError:
            folder = None
        files: list[tuple[str, str, bytes, int, str]] = []
        order = _merge_order(self.remote, sha, rel)
        seen: dict[str, str] = {}
        for blob in (folder.blobs if folder is not None else []):
            path = f"{rel}/{blob.name}" if rel not in ("", ".") else blob.name
            if not blob.name.endswith(_SUFFIXES) or blob.mode == _SYMLINK:
                continue
            rid = PurePosixPath(blob.name).stem
            if not _ID.match(rid):
                self._warn(path, f"{path}: '{rid}' is not a valid request id; skipped (rename the file)")
                continue
            if rid in seen:
                self._warn(path, f"{path}: request id {rid} is also used by {seen[rid]}; skipped")
                continue
            # A huge blob is never read into memory: decoding an empty file reports it.
            content = b"" if blob.size > MAX_REQUEST_BYTES else blob.data_stream.read()
            seen[rid] = path
            pos, added_by = order.get(path, (1 << 30, ""))
            files.append((rid, path, content, pos, added_by))
        self._sha, self._config, self._files = sha, cfg, files

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.say(f"warning: {message}")


def _merge_order(remote: GitRemote, sha: str, rel: str) -> dict[str, tuple[int, str]]:
    """``{path: (position, commit)}``: when each file was first added on the branch (first parent)."""
    spec = rel if rel not in ("", ".") else "."
    out = remote._run("log", "--first-parent", "--diff-merges=first-parent", "--diff-filter=A", "--reverse",
                      "--no-renames", "--format=%x00%H", "--name-only", sha, "--", spec)
    order: dict[str, tuple[int, str]] = {}
    for chunk in out.split("\0"):
        lines = [line for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        commit, names = lines[0].strip(), lines[1:]
        for name in sorted(names):
            if name not in order:
                order[name] = (len(order), commit)
    return order

