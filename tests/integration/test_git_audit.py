"""The git side of the runner on real git (a bare remote in a temp dir): audit store, lock, approved
requests, and the CLI paths that need no dbt and no Prefect (fast path, busy, status, log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.rescue_repo import RescueRepo, audit_events, config, git, make_repo

from rescue_runner import audit
from rescue_runner.adapters.git_audit import AuditConflict, GitAuditStore, GitLock, GitRemote, LockLost
from rescue_runner.audit import AuditEvent
from rescue_runner.operate import approved_source

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = REPO_ROOT / "examples" / "lakehouse"
T = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REQUEST = {"version": 1, "reason": "rebuild the orders lineage after a fix", "requested_by": "ana",
           "select": "stg_orders"}


@pytest.fixture
def repo(tmp_path: Path) -> RescueRepo:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DBT_"))}
    return make_repo(tmp_path, PROJECT, config(storage=tmp_path / "runs"), env=env)


def event(rid: str, seq: int, type_: str = audit.WAITING, **fields: object) -> AuditEvent:
    fields = fields or {"kind": "pause", "reason": "test", "batch": 1}
    return AuditEvent(type_, rid, T + timedelta(seconds=seq), seq, f"{seq:04x}{abs(hash(rid)) % 65536:04x}",
                      dict(fields), "test")


def store(path: Path) -> GitAuditStore:
    s = GitAuditStore(GitRemote(path, "origin"), "rescue-audit", also_fetch=["main"])
    s.refresh()
    return s


# ---- audit store ---------------------------------------------------------------------------

def test_events_are_files_on_the_audit_branch_and_the_checkout_is_untouched(repo: RescueRepo) -> None:
    head = git(repo.runner, "rev-parse", "HEAD")
    s = store(repo.runner)
    assert s.events() == [] and s.tip is None
    for seq in (1, 2, 3):
        s.append(event("r1", seq))
    assert audit_events(repo.origin) == [event("r1", 1), event("r1", 2), event("r1", 3)]
    assert store(repo.clone("other")).events() == s.events()
    log = git(repo.origin, "log", "--format=%s|%an", "rescue-audit").splitlines()
    assert log == [f"rescue audit: r1 #{n} waiting|rescue-runner" for n in (3, 2, 1)]
    assert git(repo.runner, "rev-parse", "HEAD") == head
    assert git(repo.runner, "status", "--porcelain") == ""
    assert git(repo.runner, "branch", "--list") == "* main\n"  # no local audit branch, no checkout


def test_a_rejected_push_is_rebased_and_retried(repo: RescueRepo) -> None:
    mine, theirs = store(repo.runner), store(repo.clone("other"))
    theirs.append(event("r2", 1))  # mine's tip is now stale: its push is rejected (non-fast-forward)
    pushes: list[bool] = []
    push = mine.remote.push

    def spy(*args: object, **kwargs: object) -> tuple[bool, str]:
        result = push(*args, **kwargs)  # type: ignore[arg-type]
        pushes.append(result[0])
        return result

    mine.remote.push = spy  # type: ignore[method-assign]
    mine.append(event("r1", 1))
    assert pushes == [False, True]
    assert sorted((e.request_id, e.seq) for e in audit_events(repo.origin)) == [("r1", 1), ("r2", 1)]


def test_an_event_written_behind_the_lock_holders_back_is_a_conflict(repo: RescueRepo) -> None:
    mine, theirs = store(repo.runner), store(repo.clone("other"))
    theirs.append(event("r1", 1))
    with pytest.raises(AuditConflict, match="event #1 of r1"):
        mine.append(event("r1", 1, reason="mine", kind="pause", batch=2))
    assert len(audit_events(repo.origin)) == 1


def test_files_that_are_not_events_are_reported_not_trusted(repo: RescueRepo) -> None:
    s = store(repo.runner)
    s.append(event("r1", 1))
    other = repo.clone("other")
    git(other, "checkout", "-q", "rescue-audit")
    (other / "events" / "r1" / "forged.json").write_text('{"schema": 1}')
    good = next((other / "events" / "r1").glob("*waiting*.json"))
    (other / "events" / "r1" / "renamed.json").write_text(good.read_text())
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "by hand")
    git(other, "push", "-q", "origin", "rescue-audit")
    s.refresh()
    assert [e.seq for e in s.events()] == [1]
    assert sorted(Path(p).name for p in s.unreadable) == ["forged.json", "renamed.json"]


# ---- lock ----------------------------------------------------------------------------------

def _lock(path: Path, holder: str, now: list[datetime], lease: float = 60) -> GitLock:
    return GitLock(GitRemote(path, "origin"), "prod", now=lambda: now[0], lease_seconds=lease, holder=holder)


def test_lock_is_create_only_released_and_taken_over_after_its_lease(repo: RescueRepo) -> None:
    clock = [T]
    a, b = _lock(repo.runner, "a", clock), _lock(repo.clone("other"), "b", clock)
    assert a.acquire().acquired
    busy = b.acquire()
    assert not busy.acquired and busy.holder == "a" and "holds the lock of prod until" in busy.message
    ref = git(repo.origin, "for-each-ref", "--format=%(refname)", "refs/rescue-locks/")
    assert ref.strip() == "refs/rescue-locks/prod"
    message = git(repo.origin, "log", "-1", "--format=%B", "refs/rescue-locks/prod")
    record = json.loads(message.strip().splitlines()[-1])
    assert record["holder"] == "a" and record["env"] == "prod" and record["pid"] == os.getpid()
    assert set(record) == {"holder", "host", "pid", "boot_id", "env", "acquired_at", "expires", "since"}

    clock[0] = T + timedelta(seconds=20)
    a.renew()  # more than half the lease left: no push
    clock[0] = T + timedelta(seconds=45)
    a.renew()  # now it is renewed until T+105 s
    clock[0] = T + timedelta(seconds=90)
    assert not b.acquire().acquired
    clock[0] = T + timedelta(seconds=106)
    took = b.acquire()
    assert took.acquired and took.recovered and "lease of a expired" in took.message
    with pytest.raises(LockLost):
        a.renew(force=True)
    a.release()  # a no longer holds it: its release must not free b's lock
    assert not _lock(repo.runner, "c", clock).acquire().acquired
    b.release()
    assert git(repo.origin, "for-each-ref", "refs/rescue-locks/") == ""
    assert _lock(repo.runner, "c", clock).acquire().acquired


def test_lock_of_a_dead_runner_on_this_host_is_taken_over_at_once(repo: RescueRepo) -> None:
    clock = [T]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = _lock(repo.runner, "gone", clock)
    gone.acquire()
    # Rewrite the record as if the dead process had taken it (same host and boot).
    sha, rec = gone.current()
    assert rec is not None and sha is not None
    forged = rec.__class__(**{**rec.__dict__, "pid": dead.pid, "holder": "dead"})
    commit = gone.remote.lock_commit(f"rescue lock prod\n\n{forged.to_json()}\n")
    assert gone.remote.push(commit, gone.ref, lease=sha)[0]
    took = _lock(repo.clone("other"), "b", clock).acquire()
    assert took.acquired and took.recovered and "no longer exists" in took.message


def test_only_one_of_many_simultaneous_runners_gets_the_lock(repo: RescueRepo) -> None:
    clock = [T]
    locks = [_lock(repo.clone(f"c{i}"), f"h{i}", clock) for i in range(6)]
    barrier = threading.Barrier(len(locks))
    results: list[bool] = []

    def take(lock: GitLock) -> None:
        barrier.wait()
        results.append(lock.acquire().acquired)

    threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


# ---- approved requests ---------------------------------------------------------------------

def test_approved_means_merged_in_merge_order_then_priority(repo: RescueRepo) -> None:
    repo.merge_request("2026-11-23-b", REQUEST)
    repo.merge_request("2026-11-23-a", REQUEST)
    repo.merge_request("2026-11-23-c", {**REQUEST, "priority": 5})
    # A pull request branch merged with a merge commit counts as merged at the merge.
    git(repo.dev, "checkout", "-q", "-b", "feature")
    (repo.dev / "rescues" / "2026-11-22-feature.yaml").write_text(json.dumps(REQUEST))
    git(repo.dev, "add", "-A")
    git(repo.dev, "commit", "-q", "-m", "feature request (authored first)")
    git(repo.dev, "checkout", "-q", "main")
    repo.merge_request("2026-11-23-d", REQUEST)
    git(repo.dev, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    git(repo.dev, "push", "-q", "origin", "main")
    # Not approved: only in the runner's working tree, or on an unmerged branch.
    (repo.runner / "rescues" / "2026-11-23-local.yaml").write_text(json.dumps(REQUEST))
    (repo.dev / "rescues" / "Bad Name.yaml").write_text(json.dumps(REQUEST))
    git(repo.dev, "add", "-A")
    git(repo.dev, "commit", "-q", "-m", "bad name")
    git(repo.dev, "push", "-q", "origin", "main")

    s = store(repo.runner)
    warnings: list[str] = []
    src = approved_source(s.remote, s, "main", cwd=repo.runner, config_path=None, now=lambda: T,
                          say=warnings.append)
    approved = src.approved()
    order = [a.request_id for a in sorted(approved, key=lambda a: (-a.priority, a.merge_order))]
    assert order == ["2026-11-23-c", "2026-11-23-b", "2026-11-23-a", "2026-11-23-d", "2026-11-22-feature"]
    assert all(a.request is not None and a.expired is None for a in approved)
    assert warnings == ["warning: rescues/Bad Name.yaml: 'Bad Name' is not a valid request id; skipped "
                        "(rename the file)"]
    merge = git(repo.dev, "rev-parse", "HEAD~1").strip()
    assert {a.request_id: a.commit for a in approved}["2026-11-22-feature"] == merge


# ---- the CLI without dbt or Prefect --------------------------------------------------------

def test_nothing_pending_is_fast_and_imports_neither_dbt_nor_prefect(repo: RescueRepo) -> None:
    script = ("import sys; from pathlib import Path; from rescue_runner import operate; "
              "r = operate.apply(None, Path.cwd()); "
              "print(r.status, 'dbt' in sys.modules, 'prefect' in sys.modules)")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], cwd=repo.runner, env=repo.env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["nothing", "False", "False"], out.stderr
    assert time.monotonic() - t0 < 5
    assert repo.rescue("apply").stdout == "nothing to do: no approved request is pending\n"


def test_a_second_tick_finding_the_lock_says_busy_and_exits_0(repo: RescueRepo) -> None:
    repo.merge_request("2026-11-23-a", REQUEST)
    holder = GitLock(GitRemote(repo.clone("other"), "origin"), "default", now=lambda: datetime.now(UTC))
    assert holder.acquire().acquired
    t0 = time.monotonic()
    proc = repo.rescue("apply")
    assert proc.returncode == 0 and proc.stdout.startswith(f"busy: runner {holder.holder} holds the lock")
    assert time.monotonic() - t0 < 5
    assert audit_events(repo.origin) == []
    holder.release()


def test_status_and_log_need_only_git(repo: RescueRepo) -> None:
    repo.merge_request("2026-11-23-a", REQUEST)
    s = store(repo.clone("writer"))
    s.append(event("2026-11-23-gone", 1, audit.REQUEST_FINISHED, outcome="cancelled", reason="removed"))
    env = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}  # nothing listens there
    status = json.loads(repo.rescue("status", "--format", "json", env=env).stdout)
    assert status == {"requests": [
        {"id": "2026-11-23-a", "state": "pending", "reason": "approved; not yet picked up by the runner",
         "batches": []},
        {"id": "2026-11-23-gone", "state": "cancelled", "reason": "removed", "batches": []}],
        "stale_on_main": []}  # nothing changed on main since production last built
    text = repo.rescue("log", env=env).stdout
    assert "2026-11-23-gone  #1   cancelled (None/None batches): removed" in text
    assert repo.rescue("log", "nope", check=False).returncode == 2


def test_expired_and_withdrawn_requests_are_closed_with_a_reason_without_dbt(repo: RescueRepo) -> None:
    repo.merge_request("2026-11-01-old", {**REQUEST, "expires": "2026-11-10"})
    repo.merge_request("2026-11-23-withdrawn", REQUEST)
    # The runner saw the second one already (validated, waiting for its window) ...
    s = store(repo.clone("writer"))
    first = event("2026-11-23-withdrawn", 1, audit.REQUEST_VALIDATED, content_hash="sha256:x",
                  fingerprint="sha256:f", batches=[{"index": 1, "models": ["model.lakehouse.stg_orders"]}])
    s.append(first)
    s.append(replace(event("2026-11-23-withdrawn", 2, kind="window_closed", reason="window closed", batch=1),
                     prev=first.digest))  # a trail as the runner writes it: each event chained to the last
    # ... then its pull request was reverted.
    repo.remove_request("2026-11-23-withdrawn")
    script = ("import sys; from datetime import datetime; from pathlib import Path; "
              "from rescue_runner import operate; "
              "r = operate.apply(None, Path.cwd(), now=datetime.fromisoformat('2026-11-23T12:00:00+00:00'), "
              "say=print); print('dbt' in sys.modules, 'prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], cwd=repo.runner, env=repo.env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[-1] == "False False"
    assert "2026-11-01-old: expired: expired (RR103): the request expired at 2026-11-11 00:00 UTC" in out[0]
    assert out[1] == "2026-11-23-withdrawn: cancelled: removed from the protected branch before it started"
    finished = {e.request_id: e.fields["outcome"] for e in audit_events(repo.origin)
                if e.type == audit.REQUEST_FINISHED}
    assert finished == {"2026-11-01-old": "expired", "2026-11-23-withdrawn": "cancelled"}
    assert repo.rescue("apply").stdout == "nothing to do: no approved request is pending\n"
