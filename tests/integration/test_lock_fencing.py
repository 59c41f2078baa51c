"""Locks fenced by real time, on real git (a bare remote in a temp dir; no dbt, no Prefect).

A runner's injected clock never judges a lease; a lease further ahead than the longest one
is invalid and taken over; a runner whose lock was taken stops before its next side effect;
a lock held by one runner for many leases makes cron go red and alerts.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.rescue_repo import RescueRepo, audit_events, config, make_repo
from support.webhook import serve_hook

from rescue_runner.adapters.git_audit import MAX_LEASE_SECONDS, GitLock, GitRemote, LockLost

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = REPO_ROOT / "examples" / "lakehouse"
REQUEST = {"version": 1, "reason": "rebuild the orders lineage after a fix", "requested_by": "ana",
           "select": "stg_orders"}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def repo(tmp_path: Path) -> RescueRepo:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DBT_", "RESCUE_"))}
    cfg = config(storage=tmp_path / "runs")
    cfg["notifications"] = {"webhook_url_env": "RESCUE_TEST_WEBHOOK", "timeout_seconds": 2, "retries": 0}
    repo = make_repo(tmp_path, PROJECT, cfg, env=env)
    repo.merge_request("2026-12-07-a", REQUEST)
    return repo


def test_a_runner_with_its_clock_ahead_cannot_take_a_live_lock(repo: RescueRepo) -> None:
    live = GitLock(GitRemote(repo.clone("other"), "origin"), "default", lease_seconds=600)
    assert live.acquire().acquired
    ahead = _iso(_now() + timedelta(hours=1))
    proc = repo.rescue("apply", env={"RESCUE_NOW": ahead})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"busy: runner {live.holder} holds the lock"), proc.stdout
    assert "RESCUE_NOW is set" in proc.stderr  # the test hook is loud
    assert audit_events(repo.origin) == []
    assert live.fence()  # still ours
    live.release()


def test_now_is_refused_without_dry_run(repo: RescueRepo) -> None:
    proc = repo.rescue("apply", "--now", _iso(_now()), check=False)
    assert proc.returncode == 2 and "--now only with --dry-run" in proc.stderr
    assert audit_events(repo.origin) == []


def test_a_far_future_lease_is_invalid_and_taken_over_loudly(repo: RescueRepo) -> None:
    skewed = GitLock(GitRemote(repo.clone("other"), "origin"), "default", lease_seconds=600,
                     now=lambda: _now() + timedelta(days=3))  # a host whose clock is days ahead
    assert skewed.acquire().acquired
    fresh = GitLock(GitRemote(repo.runner, "origin"), "default")
    took = fresh.acquire()
    assert took.acquired and took.recovered, took.message
    assert "INVALID LEASE" in took.message and f"{MAX_LEASE_SECONDS / 60:.0f} min" in took.message
    with pytest.raises(LockLost):  # the skewed runner stops before its next side effect
        skewed.fence()
    fresh.release()


def test_a_runner_whose_lock_was_taken_over_stops_before_its_next_side_effect(repo: RescueRepo) -> None:
    clock = [_now()]
    slow = GitLock(GitRemote(repo.clone("other"), "origin"), "default", lease_seconds=60,
                   now=lambda: clock[0])
    assert slow.acquire().acquired
    token = slow.fence()
    assert len(token) == 40
    clock[0] += timedelta(minutes=5)  # its lease ran out while it was stuck
    other = GitLock(GitRemote(repo.runner, "origin"), "default", now=lambda: clock[0])
    assert other.acquire().acquired
    with pytest.raises(LockLost, match="no longer ours"):
        slow.fence()
    assert other.fence() != token
    other.release()


def test_a_lock_held_by_one_runner_for_many_leases_makes_apply_exit_1_and_alert(repo: RescueRepo) -> None:
    clock = [_now() - timedelta(hours=2)]
    stuck = GitLock(GitRemote(repo.clone("other"), "origin"), "default", lease_seconds=600,
                    now=lambda: clock[0])
    assert stuck.acquire().acquired
    clock[0] = _now()
    stuck.renew(force=True)  # still renewing (a hung runner whose heartbeat thread lives on)
    with serve_hook() as hook:
        proc = repo.rescue("apply", env={"RESCUE_TEST_WEBHOOK": hook.url})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"stuck: runner {stuck.holder} holds the lock"), proc.stdout
    assert "looks stuck" in proc.stdout and "git push <remote> :refs/rescue-locks/default" in proc.stdout
    assert len(hook.received) == 1
    assert "runner lock default" in hook.received[0]["text"] and "stuck" in hook.received[0]["text"]
    assert audit_events(repo.origin) == []
    stuck.release()


def test_a_lock_left_for_recovery_is_taken_over_at_once_from_another_host(repo: RescueRepo) -> None:
    failed = GitLock(GitRemote(repo.clone("other"), "origin"), "default", lease_seconds=600)
    assert failed.acquire().acquired
    failed.abandon()  # a pass failed after a submission it could not record
    took = GitLock(GitRemote(repo.runner, "origin"), "default").acquire()
    assert took.acquired and took.recovered and "expired" in took.message, took.message
