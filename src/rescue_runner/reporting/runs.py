"""Renderers for ``rescue status`` (table | json) and ``rescue log`` (text | json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from ..audit import AuditEvent
from ..operate import StatusReport


def status_text(report: StatusReport) -> str:
    """A table of requests; with one request, its batches too."""
    if not report.requests:
        return "no rescue requests on the protected branch or in the audit trail\n"
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
    return "\n".join(lines) + "\n"


def status_json(report: StatusReport) -> str:
    """``{"requests": [{"id", "state", "reason", "batches": [{"index", "flow_run_id", "state"}]}]}``."""
    data = {"requests": [{"id": r.id, "state": r.state, "reason": r.reason,
                          "batches": [{"index": b["index"], "flow_run_id": b["flow_run_id"],
                                       "state": b["state"]} for b in r.batches]}
                         for r in report.requests]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


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


STATUS_RENDERERS: dict[str, Callable[[StatusReport], str]] = {"text": status_text, "json": status_json}
LOG_RENDERERS: dict[str, Callable[[Sequence[AuditEvent]], str]] = {"text": log_text, "json": log_json}

