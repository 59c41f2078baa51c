"""Operator commands without git or Prefect: id prefixes, the close/cancel fold, completion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rescue_runner import audit
from rescue_runner.audit import AuditEvent
from rescue_runner.errors import RescueError
from rescue_runner.operate import complete_ids, resolve_id

IDS = ["2026-11-23-int-orders-hotfix", "2026-11-23-int-orders-refresh", "2026-11-24-mart-revenue"]
T = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_an_id_or_a_unique_prefix_names_one_request() -> None:
    assert resolve_id("2026-11-24", IDS) == "2026-11-24-mart-revenue"
    assert resolve_id(IDS[0], IDS) == IDS[0]
    with pytest.raises(RescueError, match="matches 2 requests: 2026-11-23-int-orders-hotfix, "):
        resolve_id("2026-11-23", IDS)
    with pytest.raises(RescueError, match="no request 'nope' here") as err:
        resolve_id("nope", IDS, where=" here")
    assert "rescue status" in str(err.value)
    with pytest.raises(RescueError):
        resolve_id("", IDS)


def _trail(*extra: tuple[str, dict[str, object]]) -> list[AuditEvent]:
    base: list[tuple[str, dict[str, object]]] = [
        (audit.REQUEST_VALIDATED, {"fingerprint": "sha256:f", "batches": [
            {"index": 1, "models": ["model.p.a"]}, {"index": 2, "models": ["model.p.b"]}]}),
        (audit.BATCH_SUBMITTED, {"batch": 1, "attempt": 1, "flow_run_id": "run-1"}),
        (audit.BATCH_RUNNING, {"batch": 1, "attempt": 1, "flow_run_id": "run-1"}),
        *extra]
    return [AuditEvent(t, "r1", T + timedelta(minutes=i), i, f"{i:08x}", f)
            for i, (t, f) in enumerate(base, 1)]


def test_cancel_ends_the_request_and_its_in_flight_batch() -> None:
    trail = _trail((audit.OPERATOR_CLOSE, {"outcome": "cancelled", "by": "ana", "reason": "wrong selection",
                                           "batch": 1, "flow_run_id": "run-1", "run_state": "CANCELLED"}))
    s = audit.derive("r1", trail)
    assert s.terminal and s.outcome == audit.CANCELLED and s.in_flight is None
    assert s.batches[1].state == audit.B_CANCELLED and s.reason == "cancelled by ana: wrong selection"
    assert audit.check_consistency(trail) == []


def test_close_after_needs_operator_is_consistent_and_final() -> None:
    trail = _trail((audit.BATCH_FINISHED, {"batch": 1, "attempt": 1, "state": "crashed"}),
                   (audit.REQUEST_FINISHED, {"outcome": "needs_operator", "reason": "crashed"}),
                   (audit.OPERATOR_CLOSE, {"outcome": "closed", "by": "ana", "reason": "done by hand"}))
    s = audit.derive("r1", trail)
    assert s.outcome == audit.CLOSED and s.status == "closed"
    assert audit.check_consistency(trail) == []


def test_completion_offers_request_files_without_touching_the_network(tmp_path: Path) -> None:
    (tmp_path / "rescue.yaml").write_text("version: 1\n")
    (tmp_path / "rescues").mkdir()
    for rid in IDS:
        (tmp_path / "rescues" / f"{rid}.yaml").write_text("version: 1\n")
    assert complete_ids(None, tmp_path, "2026-11-23") == IDS[:2]
    assert complete_ids(None, tmp_path, "x") == []
