"""The post-merge guard's records on the audit branch, and the git facts it dates changes by.

Files beside the audit events (the event reader only looks under ``events/``):

* ``guard/stale.json``: the models stale on main as of the last runner pass (rewritten only
  when the list changes), read by ``rescue status`` on any machine;
* ``guard/alerts/<commit>.json``: one per change alerted. Created only if absent, with a
  fast-forward push: of two runners racing, one push is rejected, it re-reads the branch,
  finds the file and does not alert again. So an alert fires once across runners.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import RescueError
from .git_audit import GitAuditStore, GitRemote

STALE_PATH = "guard/stale.json"
ALERTS_DIR = "guard/alerts"
PUSH_ATTEMPTS = 6


class GuardRecords:
    """Read and write the guard's files on the audit branch (through the audit store's remote)."""

    def __init__(self, remote: GitRemote, store: GitAuditStore) -> None:
        self.remote, self.store = remote, store

    # -- reads --

    def stale(self) -> list[dict[str, Any]]:
        """The stale list the last runner pass recorded ([] when none)."""
        text = self._show(STALE_PATH)
        if not text:
            return []
        try:
            data = json.loads(text)
        except ValueError:
            return []
        items = data.get("stale") if isinstance(data, dict) else None
        return [i for i in items or () if isinstance(i, dict)]

    def alerted(self, commit: str) -> bool:
        return self._show(f"{ALERTS_DIR}/{commit}.json") is not None

    # -- writes --

    def write_stale(self, items: Sequence[dict[str, Any]], *, now: datetime) -> bool:
        """Record the stale list if it differs from the recorded one; True when a commit was pushed."""
        if [dict(i) for i in items] == self.stale():
            return False
        body = json.dumps({"stale": list(items), "as_of": now.astimezone(UTC).isoformat(timespec="seconds")},
                          indent=2, sort_keys=True)
        return self._put(STALE_PATH, body, f"rescue guard: {len(items)} model(s) stale on main",
                         create_only=False)

    def claim_alert(self, commit: str, record: dict[str, Any]) -> bool:
        """Create ``guard/alerts/<commit>.json``; False when it exists (someone alerted already)."""
        return self._put(f"{ALERTS_DIR}/{commit}.json", json.dumps(record, indent=2, sort_keys=True),
                         f"rescue guard: alert for {commit[:12]}", create_only=True)

    # -- plumbing --

    def _show(self, path: str) -> str | None:
        tip = self.store.tip
        if tip is None:
            return None
        try:
            return self.remote._run("show", f"{tip}:{path}")
        except RescueError:
            return None

    def _put(self, path: str, text: str, message: str, *, create_only: bool) -> bool:
        branch = self.store.branch
        for attempt in range(PUSH_ATTEMPTS):
            if create_only and self._show(path) is not None:
                return False
            blob = self.remote.store_blob(text.encode("utf-8"))
            commit = self.remote.commit_files(self.store.tip, {path: blob}, message)
            accepted, _ = self.remote.push(commit, f"refs/heads/{branch}")
            if accepted:
                self.store.tip = commit
                return True
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
            self.store.refresh()
        raise RescueError(f"could not push {path} to the audit branch {branch}",
                          hint="check push rights; the next pass tries again")


def last_change(remote: GitRemote, tip: str, paths: Sequence[str]) -> tuple[str, datetime, str] | None:
    """The newest commit reachable from ``tip`` touching any of ``paths``: (sha, time, subject)."""
    if not paths:
        return None
    out = remote._run("log", "-1", "--format=%H%x1f%ct%x1f%s", tip, "--", *paths).strip()
    if not out:
        return None
    sha, ts, subject = [*out.split("\x1f"), "", ""][:3]
    return sha, datetime.fromtimestamp(int(ts), UTC), subject


def descends(remote: GitRemote, ancestor: str, commit: str) -> bool:
    """Whether ``commit`` has ``ancestor`` in its history (or is it)."""
    if ancestor == commit:
        return True
    try:
        remote._run("merge-base", "--is-ancestor", ancestor, commit)
        return True
    except RescueError:
        return False
