"""Renderers for ``rescue status`` (table | json) and ``rescue log`` (text | json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import audit
from ..audit import AuditEvent, RequestState
from ..results import RequestStatus, StatusReport
from .prefect_run import md_text
from .units import duration


def status_text(report: StatusReport) -> str:
    """A table of requests; with one request, its batches too; then what is stale on main."""
    stale = _stale_text(report)
    if not report.requests:
        return "no rescue requests on the protected branch or in the audit trail\n" + stale
    rows = [("ID", "STATE", "BATCHES", "REASON")]
    for r in report.requests:
        done = sum(1 for b in r.batches if b["state"] == "completed")
        rows.append((r.id, r.state, f"{done}/{len(r.batches)}" if r.batches else "-", r.reason or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows]
    if len(report.requests) == 1:
        r = report.requests[0]
        for b in r.batches:
            run = f"flow run {b['flow_run_id']}" if b["flow_run_id"] else "not submitted"
            url = f"  {b['url']}" if b.get("url") else ""
            attempt = f" (attempt {b['attempt']})" if b.get("attempt") and b["attempt"] != 1 else ""
            lines.append(f"  batch {b['index']}  {b['state']:<10} {b['models']} model(s)  "
                         f"{run}{attempt}{url}")
    for p in report.problems:
        lines.append(f"warning: audit trail: {p}")
    return "\n".join(lines) + "\n" + stale


def _stale_text(report: StatusReport) -> str:
    """The post-merge guard's notices (see postmerge.py), one line per model."""
    from ..guard import stale_lines

    if not report.stale_on_main:
        return ""
    now = report.as_of or datetime.now(UTC)
    return "".join(f"{line}\n" for line in stale_lines([dict(m) for m in report.stale_on_main], now))


def status_json(report: StatusReport) -> str:
    """``{"requests": [{"id", "state", "reason", "batches": [{"index", "flow_run_id", "state"}]}]}``."""
    data = {"requests": [{"id": r.id, "state": r.state, "reason": r.reason,
                          "batches": [{"index": b["index"], "flow_run_id": b["flow_run_id"],
                                       "state": b["state"]} for b in r.batches]}
                         for r in report.requests],
            "stale_on_main": [dict(m) for m in report.stale_on_main]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def status_markdown(report: StatusReport) -> str:
    """The repository's overview for a pinned issue or a CI job summary (GitHub-flavoured markdown).

    Sections appear only when they have rows: running, waiting (why, and when the next batch
    is expected to start), needing attention (failed, needs_operator), pending, finished,
    and models stale on the protected branch.
    """
    groups: dict[str, list[RequestStatus]] = {k: [] for k in ("running", "waiting", "attention",
                                                             "pending", "finished")}
    for r in report.requests:
        groups[_group(r)].append(r)
    when = f" as of {_at(report.as_of)}" if report.as_of else ""
    counts = ", ".join(f"{len(v)} {_LABEL[k]}" for k, v in groups.items() if v) or "none"
    out = ["## Rescue status", "", f"{len(report.requests)} request(s){when}: {counts}.", ""]
    if groups["running"]:
        out += ["### Running", "", "| Request | Batch | Flow run | Submitted | Then |",
                "|---|---|---|---|---|"]
        for r in groups["running"]:
            s = _state(r)
            rec = s.in_flight
            assert rec is not None
            out.append(f"| {_rid(r)} | {rec.index} of {len(s.plan)}{_attempt(rec.attempt)} "
                       f"| {_run_link(r.id, rec.index, rec.flow_run_id, rec.url)} | {_at(rec.submitted_at)} "
                       f"| {_then(s, rec.index)} |")
        out.append("")
    if groups["waiting"]:
        out += ["### Waiting", "", "| Request | Next batch | Why | Next expected start | Waiting since |",
                "|---|---|---|---|---|"]
        for r in groups["waiting"]:
            s = _state(r)
            out.append(f"| {_rid(r)} | {_next_batch(s)} | {md_text(r.reason or '')} "
                       f"| {_expected_start(s)} | {_at(s.waiting_since)} |")
        out.append("")
    if groups["attention"]:
        out += ["### Needs attention", "", "| Request | Outcome | Batch | Failed nodes | Reason |",
                "|---|---|---|---|---|"]
        for r in groups["attention"]:
            s = _state(r)
            bad = next((b for b in reversed(s.history) if b.state not in (audit.B_COMPLETED,)), None)
            batch = _run_link(r.id, bad.index, bad.flow_run_id, bad.url) if bad else "—"
            failed = bad.failed_nodes if bad else ()
            nodes = ", ".join(f"`{md_text(n.rsplit('.', 1)[-1])}`" for n in failed[:5])
            out.append(f"| {_rid(r)} | **{md_text(r.state)}** | {batch} | {nodes or '—'} "
                       f"| {md_text(r.reason or '')} |")
        out += ["", "An operator decides: `rescue retry <id> --by NAME --reason TEXT` goes on with the next "
                    "attempt (completed batches stay done).", ""]
    if groups["pending"]:
        out += ["### Pending", "", "| Request | Batches | Next expected start | Note |", "|---|---|---|---|"]
        for r in groups["pending"]:
            s = _state(r)
            done = f"{s.completed}/{len(s.plan)}" if s.plan else "—"
            out.append(f"| {_rid(r)} | {done} | next runner pass | {md_text(r.reason or '')} |")
        out.append("")
    if groups["finished"]:
        out += ["### Finished", "", "| Request | Outcome | Batches | Finished |", "|---|---|---|---|"]
        for r in groups["finished"]:
            s = _state(r)
            out.append(f"| {_rid(r)} | {md_text(r.state)} | {s.completed}/{len(s.plan)} "
                       f"| {_at(s.finished_at)} |")
        out.append("")
    if report.stale_on_main:
        out += ["### Stale on main", "",
                "Changed on the protected branch; their tables still hold the old logic until rebuilt.", "",
                "| Model | Changed in | Downstream | What to do |", "|---|---|---:|---|"]
        for m in report.stale_on_main:
            out.append(_stale_row(m))
        out.append("")
    if report.problems:
        out += ["### Audit trail warnings", ""] + [f"- {md_text(p)}" for p in report.problems] + [""]
    return "\n".join(out)


_LABEL = {"running": "running", "waiting": "waiting", "attention": "needing attention", "pending": "pending",
          "finished": "finished"}


def _group(r: RequestStatus) -> str:
    s = _state(r)
    if s.in_flight is not None and not s.terminal:
        return "running"
    if r.state in (audit.FAILED, audit.NEEDS_OPERATOR):
        return "attention"
    if s.terminal:
        return "finished"
    return "waiting" if r.state == "waiting" else "pending"


def _state(r: RequestStatus) -> RequestState:
    return r.detail if r.detail is not None else RequestState(r.id)


def _rid(r: RequestStatus) -> str:
    return f"`{md_text(r.id)}`"


def _at(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at else "—"


def _attempt(n: int) -> str:
    return f" (attempt {n})" if n != 1 else ""


def _run_link(rid: str, index: int, flow_run_id: str | None, url: str | None) -> str:
    name = md_text(f"{rid}-batch-{index}")
    if url:
        return f"[{name}]({md_text(url)})"
    return f"{name} ({md_text(flow_run_id[:8])})" if flow_run_id else name


def _then(s: RequestState, index: int) -> str:
    nxt = next((b for b in s.plan if b.index > index), None)
    if nxt is None:
        return "last batch"
    pause = f" after a {duration(s.pause_seconds)} pause" if s.pause_seconds else ""
    return f"batch {nxt.index}{pause}"


def _next_batch(s: RequestState) -> str:
    b = s.next_batch
    if b is None:
        return "—"
    extra = ", full refresh" if b.full_refresh else ""
    extra += ", heavy" if b.heavy else ""
    return f"{b.index} of {len(s.plan)} ({len(b.models)} model(s){extra})"


def _expected_start(s: RequestState) -> str:
    if s.waiting_kind == audit.QUEUE_BUSY:
        fit = f"; forecast then: {_at(s.waiting_until)}" if s.waiting_until is not None else ""
        return f"when the queue has room (checked every runner pass{fit})"
    if s.waiting_until is not None:
        return _at(s.waiting_until)
    if s.waiting_kind == audit.PAUSE and s.last_finished and s.last_finished.finished_at:
        return _at(s.last_finished.finished_at + timedelta(seconds=s.pause_seconds))
    if s.waiting_kind == audit.WINDOW_CLOSED:
        return "the window does not open again"
    return "next runner pass"


def _stale_row(m: Mapping[str, Any]) -> str:
    model = md_text(str(m.get("model") or "?"))
    commit = str(m.get("commit") or "")
    changed = " ".join(x for x in (f"`{md_text(commit[:12])}`" if commit else "",
                                   md_text(str(m["changed_at"])) if m.get("changed_at") else "") if x)
    down = m.get("downstream")
    hint = md_text(str(m.get("hint") or "add a rescue request for it (`rescue new`)"))
    return f"| `{model}` | {changed or '—'} | {down if down is not None else '—'} | {hint} |"


def describe(e: AuditEvent) -> str:
    """One human line for an event."""
    f = e.fields
    if e.type == "request_validated":
        n = len(f.get("batches") or ())
        who = f" requested by {f['requested_by']}" if f.get("requested_by") else ""
        ticket = f" ({f['ticket']})" if f.get("ticket") else ""
        fp = str(f.get("fingerprint") or "").removeprefix("sha256:")[:12]
        commit = str(f.get("commit") or "")[:12]
        return f"validated{who}{ticket}: {n} batch(es), fingerprint {fp}, approved in commit {commit}"
    if e.type == "waiting":
        return f"waiting ({f.get('kind')}): {f.get('reason')}"
    if e.type == "batch_submitted":
        how = "adopted" if f.get("adopted") else "submitted"
        url = f" {f['url']}" if f.get("url") else ""
        return f"batch {f.get('batch')} {how} ({f.get('mode')}, attempt {f.get('attempt')}): flow run " \
               f"{f.get('flow_run_id')}{url}"
    if e.type == "batch_running":
        return f"batch {f.get('batch')} running (flow run {f.get('flow_run_id')})"
    if e.type == "batch_finished":
        counts = ", ".join(f"{k} {v}" for k, v in sorted((f.get("counts") or {}).items()))
        extra = f" [{counts}]" if counts else ""
        why = f": {f['reason']}" if f.get("reason") else ""
        return f"batch {f.get('batch')} {f.get('state')}{extra}{why}"
    if e.type == "request_finished":
        done = f"{f.get('batches_completed')}/{f.get('batches_total')}"
        return f"{f.get('outcome')} ({done} batches): {f.get('reason')}"
    if e.type == "operator_close":
        state = str(f.get("run_state") or "").lower()
        run = f" (flow run {f['flow_run_id']} {state})" if f.get("flow_run_id") else ""
        return f"{f.get('outcome')} by {f.get('by')}{run}: {f.get('reason')}"
    if e.type == "operator_retry":
        return f"retry by {f.get('by')} (attempt {f.get('attempt')}): {f.get('reason')}"
    return e.type


def log_text(events: Sequence[AuditEvent]) -> str:
    if not events:
        return "the audit trail is empty\n"
    lines = [f"{e.at:%Y-%m-%d %H:%M:%S}Z  {e.request_id}  #{e.seq:<3} {describe(e)}" for e in events]
    return "\n".join(lines) + "\n"


def log_json(events: Sequence[AuditEvent]) -> str:
    return json.dumps({"events": [e.to_dict() for e in events]}, indent=2, ensure_ascii=False) + "\n"


STATUS_RENDERERS: dict[str, Callable[[StatusReport], str]] = {
    "text": status_text, "json": status_json, "markdown": status_markdown}
LOG_RENDERERS: dict[str, Callable[[Sequence[AuditEvent]], str]] = {"text": log_text, "json": log_json}

