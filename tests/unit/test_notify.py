"""Notifications against a real HTTP server on 127.0.0.1: payloads per state, and a failing
webhook (5xx, 429, timeouts, refused connections) that never raises and returns in bounded time."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.webhook import Hook, serve_hook

from rescue_runner import notify as notify_module
from rescue_runner.config import NotificationSettings, config_from_data
from rescue_runner.notify import EVENT_KINDS, NotifyEvent, build_payload, notify, waiting_too_long


@pytest.fixture
def hook() -> Iterator[Hook]:
    with serve_hook() as server:
        yield server


def settings(**kw: Any) -> NotificationSettings:
    base: dict[str, Any] = {"webhook_url_env": "RESCUE_TEST_WEBHOOK", "timeout_seconds": 1.0, "retries": 2}
    base.update(kw)
    return NotificationSettings(**base)


def event(kind: str = "failed", **kw: Any) -> NotifyEvent:
    base: dict[str, Any] = {
        "kind": kind, "request_id": "2026-11-23-int-orders-hotfix", "state": kind,
        "reason": "int_orders double-counted refunded payments", "detail": "batch 2 failed: test not_null_x",
        "flow_run_id": "0b7c1d2e-1111-2222-3333-444455556666",
        "flow_run_url": "http://127.0.0.1:4200/runs/flow-run/0b7c1d2e-1111-2222-3333-444455556666",
        "requested_by": "ana@example.com", "ticket": "DATA-1412", "batch": 2, "batches": 3,
        "at": datetime(2026, 11, 23, 22, 5, tzinfo=UTC)}
    base.update(kw)
    return NotifyEvent(**base)


def _all_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_each_state_is_delivered_with_id_state_reason_and_link(hook: Hook, kind: str) -> None:
    env = {"RESCUE_TEST_WEBHOOK": hook.url}
    assert notify(settings(), event(kind), env=env) is True
    assert len(hook.received) == 1
    got = hook.received[0]
    assert got == build_payload(event(kind))  # what was posted is exactly the pure payload
    assert "2026-11-23-int-orders-hotfix" in got["text"] and f"state: {kind}" in got["text"]
    text = _all_text(got)
    assert "int_orders double-counted refunded payments" in text
    assert "DATA-1412" in text and "ana@example.com" in text and "*Batch:* 2 of 3" in text
    buttons = [b for b in got["blocks"] if b["type"] == "actions"]
    assert buttons[0]["elements"][0]["url"] == event(kind).flow_run_url
    assert hook.headers_seen[0]["Content-Type"].startswith("application/json")


def test_payload_headlines_differ_per_state() -> None:
    heads = {k: build_payload(event(k))["blocks"][0]["text"]["text"].splitlines()[0] for k in EVENT_KINDS}
    assert heads["failed"].endswith("failed")
    assert heads["needs_operator"].endswith("needs an operator")
    assert heads["waiting_too_long"].endswith("is still waiting")
    assert heads["succeeded"].endswith("succeeded")
    assert len(set(heads.values())) == len(EVENT_KINDS)


def test_payload_without_a_flow_run_has_no_button() -> None:
    p = build_payload(event("waiting_too_long", flow_run_id=None, flow_run_url=None,
                            detail="window closed until 22:00 Europe/Berlin"))
    assert all(b["type"] != "actions" for b in p["blocks"])
    assert "window closed until 22:00 Europe/Berlin" in p["text"]


def test_user_text_cannot_ping_or_fake_links() -> None:
    p = build_payload(event(reason="<!channel> see <https://evil.example|the fix> & more",
                            requested_by="<@U123>"))
    text = _all_text(p)
    assert "<!channel>" not in text and "<https://evil" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt;" in text and "&amp; more" in text


def test_a_non_http_link_is_not_a_button() -> None:
    p = build_payload(event(flow_run_url="javascript:alert(1)"))
    assert all(b["type"] != "actions" for b in p["blocks"])


def test_long_texts_are_clipped_to_slack_limits() -> None:
    p = build_payload(event(reason="x" * 5000, detail="y" * 5000))
    assert len(p["blocks"][0]["text"]["text"]) <= 3000


def test_nothing_is_sent_when_not_configured(hook: Hook) -> None:
    env = {"RESCUE_TEST_WEBHOOK": hook.url}
    assert notify(None, event(), env=env) is False
    assert notify(settings(on=("failed",)), event("succeeded"), env=env) is False
    assert notify(settings(), event(), env={}) is False
    assert notify(settings(), event(), env={"RESCUE_TEST_WEBHOOK": "  "}) is False
    assert hook.received == []


def test_a_non_http_url_is_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rescue_runner.notify"):
        assert notify(settings(), event(), env={"RESCUE_TEST_WEBHOOK": "file:///etc/passwd"}) is False
    assert "RESCUE_TEST_WEBHOOK" in caplog.text and "/etc/passwd" not in caplog.text


def test_server_errors_are_retried_then_given_up_without_raising(
        hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    hook.script = [(500, 0.0)] * 10
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="rescue_runner.notify"):
        assert notify(settings(retries=2), event(), env={"RESCUE_TEST_WEBHOOK": hook.url}) is False
    assert len(hook.received) == 3  # 1 + 2 retries
    assert time.monotonic() - started < 3 * 1.0 + 0.5
    assert "HTTP 500" in caplog.text and "RESCUE_TEST_WEBHOOK" in caplog.text
    assert "s3cr3t" not in caplog.text  # the URL is a secret


def test_429_and_503_are_retried_until_delivered(hook: Hook) -> None:
    hook.script = [(429, 0.0), (503, 0.0), (200, 0.0)]
    assert notify(settings(retries=2), event(), env={"RESCUE_TEST_WEBHOOK": hook.url}) is True
    assert len(hook.received) == 3


def test_client_errors_are_not_retried(hook: Hook) -> None:
    hook.script = [(404, 0.0), (200, 0.0)]
    assert notify(settings(retries=2), event(), env={"RESCUE_TEST_WEBHOOK": hook.url}) is False
    assert len(hook.received) == 1


def test_a_hanging_webhook_returns_within_the_bound(hook: Hook) -> None:
    hook.script = [(200, 3.0)] * 5
    started = time.monotonic()
    assert notify(settings(timeout_seconds=0.4, retries=5), event(),
                  env={"RESCUE_TEST_WEBHOOK": hook.url}) is False
    elapsed = time.monotonic() - started
    assert elapsed < 3 * 0.4 + 0.5, elapsed


def test_connection_refused_returns_quickly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on ``port`` any more.
    started = time.monotonic()
    env = {"RESCUE_TEST_WEBHOOK": f"http://127.0.0.1:{port}/x"}
    assert notify(settings(retries=2), event(), env=env) is False
    assert time.monotonic() - started < 3.5


def test_an_unexpected_error_never_reaches_the_caller(monkeypatch: pytest.MonkeyPatch, hook: Hook) -> None:
    def boom(_: NotifyEvent) -> dict[str, Any]:
        raise RuntimeError("bug in the payload builder")

    monkeypatch.setattr(notify_module, "build_payload", boom)
    assert notify(settings(), event(), env={"RESCUE_TEST_WEBHOOK": hook.url}) is False
    assert hook.received == []


def test_waiting_too_long_uses_the_configured_minutes() -> None:
    s = settings(waiting_too_long_minutes=120)
    since = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    assert not waiting_too_long(s, since, since + timedelta(minutes=119))
    assert waiting_too_long(s, since, since + timedelta(minutes=120))
    assert not waiting_too_long(settings(on=("failed",)), since, since + timedelta(days=1))
    assert not waiting_too_long(None, since, since + timedelta(days=1))


def test_rescue_yaml_notifications_section(tmp_path: Any) -> None:
    from rescue_runner.config import parse_config_text

    cfg, findings = parse_config_text(
        "version: 1\nnotifications:\n  webhook_url_env: TEAM_HOOK\n  on: [failed, needs_operator]\n"
        "  waiting_too_long_minutes: 90\n", tmp_path, "rescue.yaml")
    assert cfg is not None, findings
    assert cfg.notifications == NotificationSettings(
        webhook_url_env="TEAM_HOOK", on=("failed", "needs_operator"), waiting_too_long_minutes=90)
    assert config_from_data(tmp_path, {}).notifications is None
    bad, findings = parse_config_text("version: 1\nnotifications:\n  webhook_url_env: https://hooks.example/x\n",
                                      tmp_path, "rescue.yaml")
    assert bad is None and "environment variable" in findings[0].message
