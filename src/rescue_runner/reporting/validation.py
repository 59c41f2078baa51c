"""Render a ValidationReport as text, json, github (workflow annotations) or markdown (PR comment)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..model import Finding
from ..results import RequestReport, ValidationReport

MAX_LISTED = 20


def _short(uid: str) -> str:
    return uid.rsplit(".", 1)[-1]


def _location(f: Finding) -> str:
    return f"{f.path}:{f.line}" if f.line else f.path


def render_text(report: ValidationReport) -> str:
    """Human output: one line per finding (`file:line: severity CODE message`), one summary per file."""
    out = [f"{_location(f)}: {f.severity.value} {f.code} {f.message}" for f in report.config_findings]
    for r in report.requests:
        for f in r.findings:
            out.append(f"{_location(f)}: {f.severity.value} {f.code} {f.message}")
        if r.ok:
            names = ", ".join(_short(m) for m in r.models[:MAX_LISTED])
            more = f" (+{len(r.models) - MAX_LISTED} more)" if len(r.models) > MAX_LISTED else ""
            out.append(f"{r.path}: ok, {len(r.models)} model(s): {names}{more}")
    bad = sum(not r.ok for r in report.requests)
    out.append(f"{len(report.requests)} request(s) checked, {bad} with errors")
    return "\n".join(out) + "\n"


def report_to_dict(report: ValidationReport) -> dict[str, Any]:
    """The documented JSON shape (see README: `rescue validate --format json`)."""
    return {
        "ok": report.ok,
        # only when there are some (rescue.yaml problems, e.g. RR190 with --base-ref)
        **({"config_findings": [f.to_dict() for f in report.config_findings]}
           if report.config_findings else {}),
        "requests": [
            {
                "path": r.path,
                "id": r.id,
                "ok": r.ok,
                "findings": [f.to_dict() for f in r.findings],
                "models": list(r.models),
                **({"plan": r.plan.to_dict()} if r.plan is not None else {}),
                **(r.timeline.to_dict() if r.timeline is not None else {}),
            }
            for r in report.requests
        ],
    }


def render_json(report: ValidationReport) -> str:
    return json.dumps(report_to_dict(report), indent=2) + "\n"


def _gh_escape(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def gh_plain(line: str) -> str:
    """A line of plain output that the Actions runner can never read as a workflow command.

    The runner acts on a line that starts (after blanks) with ``::`` or ``##[``; request data
    (file names, messages) may hold line breaks and such text. So ``%``, CR and LF are escaped
    as in command data and every ``::`` and ``##[`` is broken up.
    """
    line = _gh_escape(line).replace("::", ":%3A")
    return line.replace("##[", "#%23[")


def render_github(report: ValidationReport) -> str:
    """GitHub Actions workflow commands: each finding becomes an annotation on its file and line.

    Every other line (the text report after the annotations) goes through ``gh_plain``, and
    the text report is rendered from findings whose strings cannot break a line.
    """
    out: list[str] = []
    level = {"error": "error", "warning": "warning", "info": "notice"}
    for f in report.findings:
        props = f"file={_gh_escape(f.path, prop=True)}"
        if f.line:
            props += f",line={f.line}"
        props += f",title={_gh_escape(f.code, prop=True)}"
        out.append(f"::{level[f.severity.value]} {props}::{_gh_escape(f.message)}")
    out.extend(gh_plain(line) for line in render_text(_one_line_strings(report)).rstrip("\n").split("\n"))
    return "\n".join(out) + "\n"


def _one_line_strings(report: ValidationReport) -> ValidationReport:
    """The report with CR and LF escaped in every path, id and message (for line-based output)."""
    import dataclasses

    def esc(text: str | None) -> str | None:
        return None if text is None else text.replace("\r", "%0D").replace("\n", "%0A")

    def fix(f: Finding) -> Finding:
        return dataclasses.replace(f, path=esc(f.path) or "", message=esc(f.message) or "")

    requests = [dataclasses.replace(r, path=esc(r.path) or "", id=esc(r.id),
                                    findings=[fix(f) for f in r.findings]) for r in report.requests]
    return dataclasses.replace(report, requests=requests,
                               config_findings=[fix(f) for f in report.config_findings])


def _md_cell(text: str) -> str:
    """Request text is untrusted: no HTML, no @mentions, no table breaks in the PR comment."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("@", "@\u200b")  # a zero-width space after @ keeps GitHub from pinging
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _markdown_request(r: RequestReport, report: ValidationReport) -> list[str]:
    status = "✅ ok" if r.ok else "❌ blocked"
    out = [f"### `{r.id}` — {status}", "", f"File: `{r.path}`", ""]
    if r.request is not None:
        req = r.request
        out += [f"- **Reason:** {_md_cell(req.reason)}", f"- **Requested by:** {_md_cell(req.requested_by)}"]
        if req.ticket:
            out.append(f"- **Ticket:** {_md_cell(req.ticket)}")
        out.append(f"- **Selection:** `{' '.join(req.select)}`"
                   + (f" excluding `{' '.join(req.exclude)}`" if req.exclude else ""))
        out.append(f"- **Full refresh:** {'yes' if req.full_refresh else 'no'}")
        out.append("")
    out += _markdown_findings(r.findings)
    overrides = [(f.code, o) for f in r.findings if (o := getattr(f, "override", None)) is not None]
    if overrides:
        out.append("**Overrides recorded** (they become part of the audit trail; check that each approver "
                   "approved this pull request):")
        out += [f"- {code} approved by {_md_cell(o.approved_by)}: {_md_cell(o.reason)}"
                for code, o in overrides]
        out.append("")
    if r.models:
        out.append(f"<details><summary>{len(r.models)} model(s) selected</summary>\n")
        out += [f"- `{m}`" for m in r.models]
        out += ["", "</details>", ""]
    if r.plan is not None and report.graph is not None:
        from .mermaid import plan_markdown

        out.append(plan_markdown(r.plan, report.graph, timeline=r.timeline))
    return out


def _blocks(f: Finding) -> str:
    """Whether a finding blocks, and why (policy findings carry their enforcement level)."""
    level = getattr(f, "level", "")
    override = getattr(f, "override", None)
    if f.blocking:
        return {"hard": "yes (hard)", "soft": "yes (soft: an approver may override)"}.get(level, "yes")
    if override is not None:
        return f"no: overridden by {_md_cell(override.approved_by)}"
    return "no"


def _markdown_findings(findings: list[Finding]) -> list[str]:
    if not findings:
        return []
    out = ["| | Code | Where | Blocks | Message |", "|---|---|---|---|---|"]
    icon = {"error": "❌", "warning": "⚠️", "info": "ℹ️"}
    for f in findings:
        out.append(f"| {icon[f.severity.value]} | {f.code} | `{_location(f)}` | {_blocks(f)} "
                   f"| {_md_cell(f.message)} |")
    return [*out, ""]


def render_markdown(report: ValidationReport) -> str:
    """A PR comment a reviewer can approve from."""
    bad = sum(not r.ok for r in report.requests)
    head = "## rescue-runner: " + (
        "all requests valid ✅" if report.ok else f"{bad} of {len(report.requests)} request(s) blocked ❌")
    out = ["<!-- rescue-runner:validate -->", head, ""]
    if report.config_findings:
        out += ["### Configuration", "", *_markdown_findings(report.config_findings)]
    for r in report.requests:
        out += _markdown_request(r, report)
    return "\n".join(out).rstrip("\n") + "\n"


RENDERERS: dict[str, Callable[[ValidationReport], str]] = {
    "text": render_text,
    "json": render_json,
    "github": render_github,
    "markdown": render_markdown,
}
