"""The runner alerts people through the webhook: success, failure, a long wait; a dead webhook
never stops it. Real HTTP on 127.0.0.1, the runner's fakes for git and Prefect."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from support.runner_fakes import (
    FakeExecutor,
    FakeLock,
    FakePrefect,
    FakeSource,
    FakeStore,
    FakeValidator,
    LockState,
    ManualClock,
    Spec,
)

from rescue_runner import audit, notify
from rescue_runner.config import NotificationSettings
from rescue_runner.faults import no_faults
from rescue_runner.runner import Runner


@pytest.fixture()
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("RESCUE_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield received
    server.shutdown()
    server.server_close()


SETTINGS = NotificationSettings(waiting_too_long_minutes=30, timeout_seconds=1, retries=0)


def _runner(specs: dict[str, Spec], prefect: FakePrefect, remote: list[audit.AuditEvent],
            clock: ManualClock, settings: NotificationSettings | None) -> Runner:
    def alert(event: audit.AuditEvent, state: audit.RequestState) -> None:
        note = notify.for_audit_event(settings, event.type, event.fields, state, event.at)
        if note is not None:
            notify.notify(settings, note)

    return Runner(store=FakeStore(remote, no_faults), source=FakeSource(specs, clock),
                  lock=FakeLock(LockState(), "runner", clock), make_validator=lambda: FakeValidator(specs),
                  make_executor=lambda: FakeExecutor(prefect), clock=clock, on_event=alert)


def _finish_runs(prefect: FakePrefect, state: str) -> None:
    for run in prefect.runs.values():
        if run.state == "SCHEDULED":
            run.state = state


def test_success_and_failure_are_announced_with_the_flow_run(webhook: list[dict[str, Any]]) -> None:
    clock, remote = ManualClock(), list[audit.AuditEvent]()
    specs = {"ok": Spec("ok", 1, order=1), "bad": Spec("bad", 1, order=2)}
    prefect = FakePrefect(audit=remote, clock=clock)
    _runner(specs, prefect, remote, clock, SETTINGS).apply()  # both submitted
    for run in prefect.runs.values():
        run.state = "COMPLETED" if run.rid == "ok" else "FAILED"
    _runner(specs, prefect, remote, clock, SETTINGS).apply()
    texts = [m["text"] for m in webhook]
    assert any("Rescue ok succeeded" in t for t in texts), texts
    assert any("Rescue bad failed" in t for t in texts), texts
    buttons = [e["url"] for m in webhook for b in m["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    assert any(u.startswith("http://prefect/runs/run-") for u in buttons)


def test_a_long_wait_is_announced_once_it_is_long(webhook: list[dict[str, Any]]) -> None:
    clock, remote = ManualClock(), list[audit.AuditEvent]()
    specs = {"slow": Spec("slow", 1)}
    prefect = FakePrefect(audit=remote, clock=clock, queue_busy=True)
    _runner(specs, prefect, remote, clock, SETTINGS).apply()
    assert webhook == []  # waiting, but not for long
    state = audit.derive_all(remote)["slow"]
    assert state.waiting_since is not None
    note = notify.for_audit_event(SETTINGS, "waiting", {"reason": "wait: 5/5 slots busy"}, state,
                                  state.waiting_since + timedelta(minutes=31))
    assert note is not None and note.kind == "waiting_too_long" and "5/5" in note.detail


def test_a_dead_webhook_never_stops_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESCUE_WEBHOOK_URL", "http://127.0.0.1:9/nothing-listens-here")
    clock, remote = ManualClock(), list[audit.AuditEvent]()
    specs = {"r": Spec("r", 2)}
    prefect = FakePrefect(audit=remote, clock=clock)
    for _ in range(4):
        _runner(specs, prefect, remote, clock, SETTINGS).apply()
        _finish_runs(prefect, "COMPLETED")
    assert audit.derive_all(remote)["r"].outcome == "succeeded"
