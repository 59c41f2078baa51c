"""The audit trail and the runner lock in git (GitPython), and the protected branch as read by the runner.

* ``GitRemote``: fetch (retrying local ref-lock races between overlapping ticks in one
  clone), ``ls-remote``, and pushes whose result is checked. GitPython does not raise on
  a rejected push, and cannot even parse the result when the source is a raw sha, so
  every push goes from a short-lived private ref and its ``PushInfo`` flags are inspected.
* ``GitAuditStore``: one file per event on the audit branch, written with plumbing (no
  checkout, no working tree change): blob -> tree (temporary index) -> commit -> push without
  force. A rejected push (another writer got there first) is fetched and the event is
  re-committed on the new tip (one new file per event, so a rebase never conflicts), a bounded
  number of times.
* ``GitLock``: ``refs/rescue-locks/<env>`` on the remote, a parentless commit whose message
  is the lock record (JSON: holder, host, pid, boot id, acquired, expires). Taken with
  ``--force-with-lease=<ref>:`` (create-only: a second pusher is rejected), renewed and
  taken over with a lease on the sha last seen (compare-and-set), released by a delete with
  the same lease.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from ..audit import EVENTS_DIR, AuditError, AuditEvent
from ..errors import RescueError
from ..faults import FaultHook, no_faults

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
IDENTITY = {"GIT_AUTHOR_NAME": "rescue-runner", "GIT_AUTHOR_EMAIL": "rescue-runner@localhost",
            "GIT_COMMITTER_NAME": "rescue-runner", "GIT_COMMITTER_EMAIL": "rescue-runner@localhost"}
PUSH_ATTEMPTS = 8
_REF_RACE = ("cannot lock ref", "unable to create", "unable to update local ref", ".lock': file exists",
             "is at", "but expected")


class AuditConflict(RescueError):
    """Someone else wrote events for the same request while this runner held the lock."""


class LockLost(RescueError):
    """The lease of this runner's lock was taken over (it was too slow to renew)."""


def _git() -> Any:
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import without a git executable
        raise RescueError(f"git is not available: {exc}", hint="install git") from exc
    return git


class GitRemote:
    """A local clone and one of its remotes."""

    def __init__(self, start: Path, remote: str) -> None:
        git = _git()
        try:
            self.repo = git.Repo(start, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise RescueError(f"{start}: not inside a git repository",
                              hint="run rescue-runner's commands in a clone of the repository that "
                                   "holds rescue.yaml (cd into it), or pass --config") from exc
        if remote not in [r.name for r in self.repo.remotes]:
            raise RescueError(f"the repository has no remote named {remote!r}",
                              hint="set audit.remote in rescue.yaml or add the remote (git remote add ...)")
        self.name = remote
        self.root = Path(self.repo.working_tree_dir or self.repo.git_dir).resolve()
        self._nonce = uuid.uuid4().hex[:10]

    # -- reads --

    def ls_remote(self, *refs: str) -> dict[str, str]:
        """``{ref: sha}`` for those of ``refs`` that exist on the remote."""
        out = self._run("ls-remote", self.name, *refs)
        found: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref in refs:
                found[ref] = sha
        return found

    def fetch_branches(self, branches: Sequence[str]) -> dict[str, str | None]:
        """Fetch ``branches`` into ``refs/remotes/<remote>/<b>``; their tips (None: no such branch)."""
        heads = self.ls_remote(*[f"refs/heads/{b}" for b in branches])
        specs = [f"+refs/heads/{b}:refs/remotes/{self.name}/{b}"
                 for b in branches if f"refs/heads/{b}" in heads]
        if specs:
            self._retry_ref_race(
                lambda: self._run("fetch", "--quiet", "--no-write-fetch-head", self.name, *specs))
        return {b: heads.get(f"refs/heads/{b}") for b in branches}

    def push_problem(self, branch: str) -> str | None:
        """Why this clone could not push to ``branch`` of the remote (a dry-run push), or None."""
        try:
            self._run("push", "--dry-run", "--quiet", self.name, f"HEAD:refs/heads/{branch}-doctor-probe")
        except RescueError as exc:
            return exc.message
        return None

    def fetch_ref(self, ref: str) -> None:
        """Fetch the objects of a remote ref without writing any local ref."""
        self._retry_ref_race(lambda: self._run("fetch", "--quiet", "--no-write-fetch-head", self.name, ref))

    def has_object(self, sha: str) -> bool:
        try:
            self._run("cat-file", "-e", sha)
            return True
        except RescueError:
            return False

    def blob(self, sha: str) -> bytes:
        data: bytes = self.repo.odb.stream(bytes.fromhex(sha)).read()
        return data

    def commit_message(self, sha: str) -> str:
        return str(self.repo.commit(sha).message)

    # -- writes --

    def store_blob(self, data: bytes) -> str:
        from gitdb.base import IStream

        return bytes(self.repo.odb.store(IStream("blob", len(data), BytesIO(data))).binsha).hex()

    def commit_files(self, base: str | None, files: Mapping[str, str], message: str) -> str:
        """A commit on ``base`` (None: a root commit) adding ``{path: blob sha}``; no checkout touched."""
        with tempfile.TemporaryDirectory(prefix="rescue-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if base:
                self._run("read-tree", base, env=env)
            else:
                self._run("read-tree", "--empty", env=env)
            for path, sha in files.items():
                self._run("update-index", "--add", "--cacheinfo", f"100644,{sha},{path}", env=env)
            tree = self._run("write-tree", env=env).strip()
        parents = ["-p", base] if base else []
        return self._run("commit-tree", tree, *parents, "-m", message, env=IDENTITY).strip()

    def lock_commit(self, message: str) -> str:
        """A parentless commit with the empty tree (a lock record)."""
        return self._run("commit-tree", EMPTY_TREE, "-m", message, env=IDENTITY).strip()

    def push(self, sha: str | None, dst: str, *, lease: str | None = None) -> tuple[bool, str]:
        """Push ``sha`` (None: delete) to ``dst``; ``(accepted, summary)``. Never forces except with a lease.

        Rejections come back as ``(False, ...)``; transport errors raise RescueError.
        """
        from git.remote import PushInfo

        git = _git()
        tmp = f"refs/rescue-runner/push-{self._nonce}-{uuid.uuid4().hex[:6]}"
        kwargs: dict[str, Any] = {}
        if lease is not None:
            kwargs["force_with_lease"] = f"{dst}:{lease}"
        if sha is not None:
            self._run("update-ref", tmp, sha)
        # GitPython logs a warning for every rejected push; a rejection is an answer here, checked below.
        quiet = logging.getLogger("git.remote")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            remote = self.repo.remote(self.name)
            try:
                infos = remote.push(f"{tmp}:{dst}" if sha is not None else f":{dst}", **kwargs)
            except git.GitCommandError as exc:  # no parsable result at all: transport or setup failure
                raise RescueError(f"git push to {self.name} failed: {_one_line(str(exc.stderr or exc))}",
                                  hint="check the remote URL and push rights") from exc
        finally:
            quiet.setLevel(level)
            if sha is not None:
                with contextlib.suppress(RescueError):
                    self._run("update-ref", "-d", tmp)
        bad = PushInfo.REJECTED | PushInfo.REMOTE_REJECTED | PushInfo.REMOTE_FAILURE | PushInfo.ERROR
        mine = [i for i in infos if i.remote_ref_string == dst] or list(infos)
        if not mine:
            raise RescueError(f"git push to {self.name} {dst}: no result reported")
        summary = "; ".join(i.summary.strip() for i in mine)
        return not any(i.flags & bad for i in mine), summary

    # -- plumbing --

    def _run(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        git = _git()
        try:
            out: str = self.repo.git.execute(["git", *args], env=dict(env or {}),
                                             strip_newline_in_stdout=False)
            return out
        except git.GitCommandError as exc:
            raise RescueError(f"git {args[0]} failed: {_one_line(str(exc.stderr or exc))}") from exc

    def _retry_ref_race(self, fn: Callable[[], Any], attempts: int = 12) -> Any:
        """Overlapping ticks in one clone race for the same local refs: wait a little and retry."""
        for i in range(attempts):
            try:
                return fn()
            except RescueError as exc:
                if i == attempts - 1 or not any(m in str(exc).lower() for m in _REF_RACE):
                    raise
                time.sleep(0.05 + random.random() * 0.2 * (i + 1))
        raise AssertionError("unreachable")


def _one_line(text: str) -> str:
    return " ".join(text.replace("stderr:", "").split())[:300]


# ---- the audit store -----------------------------------------------------------------------

class GitAuditStore:
    """The audit branch. ``refresh`` also fetches the protected branch (one round trip for both)."""

    def __init__(self, remote: GitRemote, branch: str, *, also_fetch: Sequence[str] = (),
                 fault: FaultHook = no_faults, push_attempts: int = PUSH_ATTEMPTS,
                 holder: str = "") -> None:
        self.remote, self.branch, self.fault = remote, branch, fault
        self.also_fetch = tuple(b for b in also_fetch if b != branch)
        self.push_attempts = push_attempts
        self.holder = holder
        self.tip: str | None = None  # the audit branch tip these events are read from
        self.tips: dict[str, str | None] = {}
        self._events: list[AuditEvent] = []
        self._cache: dict[str, AuditEvent] = {}  # blob sha -> event
        self.unreadable: list[str] = []  # paths on the branch that are not events

    def refresh(self) -> None:
        self.tips = self.remote.fetch_branches([self.branch, *self.also_fetch])
        self.tip = self.tips.get(self.branch)
        self._events = self._read(self.tip)

    def events(self) -> list[AuditEvent]:
        return list(self._events)

    def read_local(self) -> list[AuditEvent] | None:
        """The events at this clone's copy of the branch (``<remote>/<branch>``, else the local
        branch), without fetching; None when the clone has neither (e.g. not fetched in CI)."""
        for ref in (f"refs/remotes/{self.remote.name}/{self.branch}", f"refs/heads/{self.branch}"):
            try:
                sha = self.remote._run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
            except RescueError:
                continue
            if sha:
                return self._read(sha)
        return None

    def append(self, event: AuditEvent) -> None:
        data = event.to_json().encode("utf-8")
        blob = self.remote.store_blob(data)
        message = (f"rescue audit: {event.request_id} #{event.seq} {event.type}\n\n"
                   f"Rescue-Runner: {event.runner or self.holder}\n")
        for attempt in range(self.push_attempts):
            commit = self.remote.commit_files(self.tip, {event.path: blob}, message)
            self.fault("before_audit_push")
            accepted, summary = self.remote.push(commit, f"refs/heads/{self.branch}")
            if accepted:
                self.tip = commit
                self._events.append(event)
                self.fault("after_audit_push")
                return
            # Someone else pushed first: take their tip, make sure they did not write for this
            # request behind our back (only the lock holder should), and re-commit on top.
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
            self.refresh()
            clash = [e for e in self._events if e.request_id == event.request_id and e.seq >= event.seq]
            if clash:
                raise AuditConflict(
                    f"audit branch {self.branch}: event #{clash[0].seq} of {event.request_id} was written by "
                    f"{clash[0].runner or 'someone else'} while this runner held the lock",
                    hint="another runner is active for this environment; the next pass rebuilds from git")
        raise RescueError(f"could not push to the audit branch {self.branch} after {self.push_attempts} "
                          f"attempts ({summary})", hint="check push rights and the remote; nothing was lost: "
                          "the next pass retries from the state in git")

    def _read(self, tip: str | None) -> list[AuditEvent]:
        if tip is None:
            return []
        if not self.remote.has_object(tip):
            self.remote.fetch_ref(f"refs/heads/{self.branch}")
        out = self.remote._run("ls-tree", "-r", "-z", "--full-tree", tip, "--", EVENTS_DIR)
        events: list[AuditEvent] = []
        self.unreadable = []
        for entry in out.split("\0"):
            if not entry:
                continue
            meta, _, path = entry.partition("\t")
            parts = meta.split()
            if len(parts) != 3 or parts[1] != "blob" or not path.endswith(".json"):
                self.unreadable.append(path)
                continue
            sha = parts[2]
            ev = self._cache.get(sha)
            if ev is None:
                try:
                    ev = AuditEvent.from_json(self.remote.blob(sha))
                except AuditError:
                    self.unreadable.append(path)
                    continue
                self._cache[sha] = ev
            if ev.path != path:
                self.unreadable.append(path)  # a file renamed or copied by hand
                continue
            events.append(ev)
        return events


# ---- the lock ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LockRecord:
    """What a lock commit says."""

    holder: str
    host: str
    pid: int
    boot_id: str
    env: str
    acquired_at: datetime  # when this record was written (taken or renewed)
    expires: datetime
    since: datetime | None = None  # when this holder first took the lock (kept across renewals)

    @property
    def held_since(self) -> datetime:
        return self.since or self.acquired_at

    def to_json(self) -> str:
        return json.dumps({"holder": self.holder, "host": self.host, "pid": self.pid, "boot_id": self.boot_id,
                           "env": self.env, "acquired_at": self.acquired_at.isoformat(),
                           "expires": self.expires.isoformat(),
                           "since": self.held_since.isoformat()}, sort_keys=True)

    @classmethod
    def from_message(cls, message: str) -> LockRecord:
        d = json.loads(message.strip().splitlines()[-1])
        return cls(holder=str(d["holder"]), host=str(d["host"]), pid=int(d["pid"]), boot_id=str(d["boot_id"]),
                   env=str(d["env"]), acquired_at=datetime.fromisoformat(d["acquired_at"]),
                   expires=datetime.fromisoformat(d["expires"]),
                   since=datetime.fromisoformat(d["since"]) if d.get("since") else None)


def new_holder_id() -> str:
    """``host:pid:nonce`` (the nonce tells two runs apart even if a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


MAX_LEASE_SECONDS = 3600.0  # a lease ending further ahead than this (plus skew) is invalid
CLOCK_SKEW_SECONDS = 120.0  # tolerated difference between runner machines' clocks
STUCK_LEASE_PERIODS = 6  # the same holder for longer than this many leases: stuck, say so loudly


def _utc_now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


class GitLock:
    """One runner per environment: a compare-and-set ref on the remote with a lease.

    Leases are judged by this machine's clock (``now`` defaults to it; never the runner's
    injected ``--now``). A lease ending further ahead than ``MAX_LEASE_SECONDS`` cannot have
    been written by a sane runner and is taken over. ``fence()`` checks, right before a side
    effect, that the ref still holds this runner's lock commit and returns that commit as the
    fencing token recorded with the side effect.
    """

    def __init__(self, remote: GitRemote, env: str, *, now: Callable[[], datetime] = _utc_now,
                 lease_seconds: float = 600.0, holder: str | None = None) -> None:
        if not env or any(c in env for c in " ~^:?*[\\") or env.startswith("-") or ".." in env:
            raise RescueError(f"{env!r} is not a usable environment name for the lock",
                              hint="use letters, digits, '-', '_' or '.'")
        self.remote, self.env, self._now = remote, env, now
        self.lease = timedelta(seconds=lease_seconds)
        self.holder = holder or new_holder_id()
        self.ref = f"refs/rescue-locks/{env}"
        self.sha: str | None = None  # our lock commit on the remote
        self.expires: datetime | None = None
        self._record_expires: datetime | None = None
        self._since: datetime | None = None

    def current(self) -> tuple[str | None, LockRecord | None]:
        """The lock as it is on the remote now: (sha, record); (None, None) when free."""
        for _ in range(5):
            sha = self.remote.ls_remote(self.ref).get(self.ref)
            if sha is None:
                return None, None
            if not self.remote.has_object(sha):
                self.remote.fetch_ref(self.ref)
            if self.remote.has_object(sha):
                try:
                    return sha, LockRecord.from_message(self.remote.commit_message(sha))
                except (ValueError, KeyError, IndexError):
                    return sha, None  # not a lock record: treated as expired long ago
        raise RescueError(f"could not read the lock {self.ref} (it keeps moving)")

    def acquire(self) -> Any:
        from ..runner import LockResult

        for _ in range(4):
            sha, rec = self.current()
            if sha is None:
                mine = self._make()
                ok, _ = self.remote.push(mine, self.ref, lease="")
                if ok:
                    return self._took(mine, recovered=False, message="taken")
                continue  # someone created it between our read and our push: read again
            assert sha is not None
            stale = self._stale(rec)
            if stale is None:
                assert rec is not None
                return self._busy(rec)
            mine = self._make()
            ok, _ = self.remote.push(mine, self.ref, lease=sha)
            if ok:
                return self._took(mine, recovered=True, message=f"taken over: {stale}")
        return LockResult(False, "?", message=f"lost every race for the lock of {self.env}; "
                                              "another runner is starting")

    def renew(self, *, force: bool = False) -> None:
        """Extend the lease when half of it is gone (or always with ``force``); LockLost if taken over."""
        if self.sha is None or self.expires is None:
            return
        if not force and self.expires - self._now() > self.lease / 2:
            return
        mine = self._make()
        ok, summary = self.remote.push(mine, self.ref, lease=self.sha)
        if not ok:
            raise LockLost(f"the lock of {self.env} was taken over by another runner ({summary})",
                           hint="this pass stops; the other runner continues from the state in git")
        self.sha = mine
        self.expires = self._record_expires

    def fence(self) -> str:
        """The fencing token (our lock commit) if the remote still holds our lock; LockLost if not."""
        if self.sha is None:
            raise LockLost(f"this runner does not hold the lock of {self.env}")
        current = self.remote.ls_remote(self.ref).get(self.ref)
        if current != self.sha:
            raise LockLost(f"the lock of {self.env} is no longer ours (another runner took it over)",
                           hint="this pass stops before its next side effect; the other runner continues")
        return self.sha

    def abandon(self) -> None:
        """Leave the lock for recovery: rewrite it with a lease that ends now.

        The next runner (any host) finds it expired and takes it over as from a dead runner, so it
        looks for runs this one may have submitted without recording them, without waiting out
        the lease."""
        if self.sha is None:
            return
        now = self._now()
        rec = LockRecord(self.holder, socket.gethostname(), os.getpid(), boot_id(), self.env, now, now,
                         since=self._since)
        mine = self.remote.lock_commit(f"rescue lock {self.env} (left for recovery)\n\n{rec.to_json()}\n")
        with contextlib.suppress(RescueError):
            self.remote.push(mine, self.ref, lease=self.sha)
        self.sha = None

    def release(self) -> None:
        if self.sha is None:
            return
        with contextlib.suppress(RescueError):
            self.remote.push(None, self.ref, lease=self.sha)
        self.sha = None

    # -- helpers --

    def _busy(self, rec: LockRecord) -> Any:
        from ..runner import LockResult

        now = self._now()
        lease = max(rec.expires - rec.acquired_at, timedelta(seconds=1))
        held = now - rec.held_since
        message = (f"runner {rec.holder} holds the lock of {self.env} until "
                   f"{rec.expires:%Y-%m-%d %H:%M:%S} UTC")
        if held > lease * STUCK_LEASE_PERIODS:
            return LockResult(False, rec.holder, rec.expires, stuck=True, message=(
                f"{message}, and has held it since {rec.held_since:%Y-%m-%d %H:%M:%S} UTC "
                f"({held.total_seconds() / 60:.0f} min, more than {STUCK_LEASE_PERIODS} leases): it looks "
                f"stuck. Check the runner on {rec.host} (pid {rec.pid}); if it is gone or hung, stop it or "
                f"delete the lock: git push <remote> :{self.ref}"))
        return LockResult(False, rec.holder, rec.expires, message=message)

    def _make(self) -> str:
        now = self._now()
        self._record_expires = now + self.lease
        self._since = self._since or now
        rec = LockRecord(self.holder, socket.gethostname(), os.getpid(), boot_id(), self.env, now,
                         self._record_expires, since=self._since)
        return self.remote.lock_commit(f"rescue lock {self.env}\n\n{rec.to_json()}\n")

    def _took(self, sha: str, *, recovered: bool, message: str) -> Any:
        from ..runner import LockResult

        self.sha, self.expires = sha, self._record_expires
        assert self.expires is not None
        return LockResult(True, self.holder, self.expires, recovered=recovered, message=message)

    def _stale(self, rec: LockRecord | None) -> str | None:
        """Why the current lock may be taken over, or None when it is valid."""
        if rec is None:
            return "the lock ref holds no lock record"
        now = self._now()
        if now >= rec.expires:
            return f"the lease of {rec.holder} expired at {rec.expires:%Y-%m-%d %H:%M:%S} UTC"
        limit = timedelta(seconds=MAX_LEASE_SECONDS + CLOCK_SKEW_SECONDS)
        if rec.expires - now > limit:
            return (f"INVALID LEASE: {rec.holder} claims the lock until {rec.expires:%Y-%m-%d %H:%M:%S} UTC, "
                    f"further ahead than the longest lease ({MAX_LEASE_SECONDS / 60:.0f} min); a wrong clock "
                    "or a hand-made lock record. Check the clock of the host that wrote it")
        if rec.host == socket.gethostname() and rec.boot_id and rec.boot_id == boot_id() \
                and rec.pid != os.getpid() and not _alive(rec.pid):
            return f"runner {rec.holder} is gone (process {rec.pid} no longer exists on this host)"
        return None


def local_request_ids(repo_dir: Path, remote: str, branch: str) -> list[str]:
    """Request ids in the last fetched audit branch (no network: for shell completion)."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-tree", "--name-only", f"refs/remotes/{remote}/{branch}",
                              f"{EVENTS_DIR}/"], cwd=repo_dir, capture_output=True, text=True, timeout=5,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split("/", 1)[1] for line in out.splitlines() if "/" in line]
