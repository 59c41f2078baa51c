"""Chat alerts for state changes that need people, as a Slack-compatible incoming-webhook payload.

The stable API (used by the runner):

* ``NotifyEvent``: what happened (kind, request id, state, reason, flow-run link, ...).
* ``build_payload(event) -> dict``: the JSON body, pure and separately testable.
* ``notify(settings, event) -> bool``: post it; True when delivered. It NEVER raises and
  returns within a bounded time (``3 * settings.timeout_seconds`` at most): a broken webhook is
  logged as a warning and must not block or fail the runner.
* ``waiting_too_long(settings, since, now) -> bool``: when a waiting request deserves an alert.
* ``for_audit_event(settings, event_type, fields, state, at) -> NotifyEvent | None``: which
  recorded runner events deserve an alert (request finished succeeded / failed / needs an
  operator; a wait that has lasted ``waiting_too_long_minutes``; a batch running long). The
  runner calls it for every event it pushes and hands the result to ``notify``.

The webhook URL is a secret: it is read from the environment variable named in rescue.yaml
(``notifications.webhook_url_env``) at call time and never logged or stored.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .config import NOTIFY_EVENTS, NotificationSettings
from .redact import redact, register_url

__all__ = ["EVENT_KINDS", "NotifyEvent", "build_payload", "for_audit_event", "notify", "waiting_too_long"]

log = logging.getLogger(__name__)

EVENT_KINDS = NOTIFY_EVENTS
_TITLES = {
    "waiting_too_long": (":hourglass:", "is still waiting"),
    "failed": (":x:", "failed"),
    "needs_operator": (":rotating_light:", "needs an operator"),
    "succeeded": (":white_check_mark:", "succeeded"),
    "running_long": (":turtle:", "is running long"),
    "stale_on_main": (":warning:", "is suggested: production is stale on main"),
}
_SECTION_LIMIT = 2900  # Slack: section text at most 3000 characters
_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class NotifyEvent:
    """One state change worth telling people about.

    ``kind`` is one of EVENT_KINDS; ``state`` is the runner's state name as shown by
    ``rescue status``; ``reason`` is the request's own reason; ``detail`` says what happened
    (the failing node, why it waits, why an operator is needed)."""

    kind: str
    request_id: str
    state: str
    reason: str = ""
    detail: str = ""
    flow_run_id: str | None = None
    flow_run_url: str | None = None
    requested_by: str | None = None
    ticket: str | None = None
    batch: int | None = None  # 1-based index of the batch concerned
    batches: int | None = None
    at: datetime | None = None
    body: str = ""  # preformatted text shown as a code block (a ready-to-commit request)


def _escape(text: str) -> str:
    """Slack mrkdwn escaping: user text cannot ping (<!channel>) or fake links (<url|label>)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_payload(event: NotifyEvent) -> dict[str, Any]:
    """The webhook body: ``text`` (fallback and notification preview) plus Block Kit ``blocks``."""
    emoji, verb = _TITLES.get(event.kind, (":information_source:", event.kind.replace("_", " ")))
    rid = _escape(event.request_id)
    headline = f"{emoji} Rescue `{rid}` {verb}"
    fields = [f"*State:* {_escape(event.state)}"]
    if event.batch is not None:
        of = f" of {event.batches}" if event.batches is not None else ""
        fields.append(f"*Batch:* {event.batch}{of}")
    if event.requested_by:
        fields.append(f"*Requested by:* {_escape(_clip(event.requested_by, 200))}")
    if event.ticket:
        fields.append(f"*Ticket:* {_escape(_clip(event.ticket, 300))}")
    if event.flow_run_id:
        fields.append(f"*Flow run:* `{_escape(event.flow_run_id)}`")
    body = [headline]
    if event.detail:
        body.append(_escape(_clip(event.detail, 1000)))
    if event.reason:
        body.append(f"*Reason:* {_escape(_clip(event.reason, 1000))}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip("\n".join(body), _SECTION_LIMIT)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if event.body:
        fence = "```"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(
            f"{fence}\n{_escape(event.body)}\n{fence}", _SECTION_LIMIT)}})
    link = event.flow_run_url if event.flow_run_url and event.flow_run_url.startswith(
        ("https://", "http://")) else None
    if link:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Open the Prefect flow run"},
            "url": link}]})
    if event.at is not None:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"rescue-runner · {event.at.isoformat(timespec='seconds')}"}]})
    text = f"Rescue {event.request_id} {verb} (state: {event.state})"
    if event.detail:
        text += f": {_clip(event.detail, 300)}"
    if link:
        text += f" {link}"
    return {"text": _escape(text), "blocks": blocks}


def waiting_too_long(settings: NotificationSettings | None, since: datetime, now: datetime) -> bool:
    """True when a request waiting since ``since`` has waited at least the configured minutes."""
    if settings is None or "waiting_too_long" not in settings.on:
        return False
    return now - since >= timedelta(minutes=settings.waiting_too_long_minutes)


def notify(settings: NotificationSettings | None, event: NotifyEvent, *,
           env: Mapping[str, str] | None = None,
           sleep: Callable[[float], None] = time.sleep) -> bool:
    """Post ``event`` to the configured webhook. True when delivered; never raises.

    Nothing is sent (False) when notifications are not configured, the event kind is not in
    ``settings.on``, or the environment variable is unset. Connection errors, timeouts,
    HTTP 429 and 5xx are retried ``settings.retries`` times with backoff; other answers are
    final. All attempts together take at most ``3 * settings.timeout_seconds``.
    """
    try:
        if settings is None or event.kind not in settings.on:
            return False
        url = (env if env is not None else os.environ).get(settings.webhook_url_env, "").strip()
        if not url:
            return False
        if not url.startswith(("https://", "http://")):
            log.warning("notification not sent: $%s is not an http(s) URL", settings.webhook_url_env)
            return False
        register_url(url)  # its credentials are masked wherever a text might quote them
        # No credential in any alert: every text of the payload is redacted.
        body = redact(json.dumps(build_payload(event))).encode("utf-8")
        return _post(url, body, settings, sleep, what=f"{event.kind} of {event.request_id}")
    except Exception as exc:  # a notification must never fail the caller
        log.warning("notification not sent: %s: %s", type(exc).__name__, redact(str(exc)))
        return False


def _post(url: str, body: bytes, s: NotificationSettings,
          sleep: Callable[[float], None], what: str) -> bool:
    deadline = time.monotonic() + 3 * s.timeout_seconds
    problem = ""
    for attempt in range(s.retries + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            break
        retry_after: float | None = None
        try:
            req = urllib.request.Request(_plain(url), data=body, method="POST", headers={
                "Content-Type": "application/json; charset=utf-8", "User-Agent": "rescue-runner",
                **_basic_auth(url)})
            with urllib.request.urlopen(req, timeout=min(s.timeout_seconds, remaining)) as resp:
                resp.read(4096)
                return True
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                break  # a bad URL or payload does not get better by retrying
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = redact(f"{type(reason).__name__}: {reason}")
        if attempt < s.retries:
            pause = retry_after if retry_after is not None else _BACKOFF_SECONDS[min(attempt, 4)]
            pause = min(pause, deadline - time.monotonic() - 0.05)
            if pause > 0:
                sleep(pause)
    # The URL is a secret: name the variable, never the value.
    log.warning("notification %s not delivered to $%s: %s", what, s.webhook_url_env, problem or "timed out")
    return False


def _plain(url: str) -> str:
    """The URL without ``user:password@`` (urllib cannot send it; ``_basic_auth`` does)."""
    scheme, _, rest = url.partition("://")
    host_end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    return f"{scheme}://{rest[:host_end].rpartition('@')[2]}{rest[host_end:]}"


def _basic_auth(url: str) -> dict[str, str]:
    import base64
    from urllib.parse import unquote

    rest = url.partition("://")[2]
    host_end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    userinfo = rest[:host_end].rpartition("@")[0]
    if not userinfo:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(unquote(userinfo).encode()).decode()}


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def for_audit_event(settings: NotificationSettings | None, event_type: str, fields: Mapping[str, Any],
                    state: Any, at: datetime) -> NotifyEvent | None:
    """The alert a recorded runner event deserves, or None.

    ``state`` is the request's state after the event (``audit.RequestState``): its
    ``outcome``, ``reason``, ``waiting_since`` and latest batch record give the details.
    """
    if settings is None:
        return None
    latest = max(getattr(state, "batches", {}).values(), key=lambda b: b.index, default=None)
    plan = getattr(state, "plan", ())

    def event(kind: str, state_name: str) -> NotifyEvent:
        return NotifyEvent(kind=kind, request_id=str(state.request_id), state=state_name,
                           detail=str(fields.get("reason") or ""),
                           flow_run_id=getattr(latest, "flow_run_id", None),
                           flow_run_url=getattr(latest, "url", None),
                           batch=getattr(latest, "index", None), batches=len(plan) or None, at=at)

    if event_type == "request_finished":
        outcome = str(fields.get("outcome", ""))
        return event(outcome, outcome) if outcome in ("succeeded", "failed", "needs_operator") else None
    if event_type == "batch_running_long":
        note = event("running_long", "running")
        est = float(fields.get("estimate_seconds") or 0.0)
        detail = (f"batch {fields.get('batch')} has run {fields.get('minutes')} min, estimate "
                  f"{est / 60:.1f} min (flow run {fields.get('flow_run_id')})")
        return replace(note, detail=detail)
    since = getattr(state, "waiting_since", None)
    if event_type == "waiting" and since is not None and waiting_too_long(settings, since, at):
        return event("waiting_too_long", "waiting")
    return None
