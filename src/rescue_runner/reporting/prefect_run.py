"""What a rescue flow run carries in Prefect: its tags and its two markdown artifacts (pure).

The on-call engineer watches the Prefect UI, so each batch's run says there why it runs,
who asked, which ticket, which commit was approved, which models it builds, what ran
before and what comes next, and where the audit trail is. The submitter attaches the
context artifact right after the run is created; the flow adds a short result artifact
when it ends. Every free text goes through ``redact`` (URLs lose their credentials,
registered secret values are masked) and markdown escaping: request text is untrusted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import PlannedBatch
from ..redact import redact, redact_url
from .units import duration

TAG = "rescue"
FULL_REFRESH_TAG = "full-refresh"
MAX_MODELS_LISTED = 50
MAX_NODES_LISTED = 20
_KEY_CHARS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class RunContext:
    """Everything the context artifact shows about one batch's flow run (plain values)."""

    request_id: str
    batch: int
    batches: tuple[PlannedBatch, ...]
    reason: str | None = None
    requested_by: str | None = None
    ticket: str | None = None
    commit: str | None = None
    attempt: int = 1
    event_time: tuple[str, str] | None = None  # ISO start, end (end exclusive)
    done: frozenset[int] = frozenset()  # batch indexes already completed
    audit_url: str | None = None
    pr_url: str | None = None
    commit_url: str | None = None

    @property
    def this(self) -> PlannedBatch | None:
        return next((b for b in self.batches if b.index == self.batch), None)

    @property
    def full_refresh(self) -> bool:
        b = self.this
        return bool(b and b.full_refresh)


def run_tags(ctx: RunContext) -> list[str]:
    """``rescue``, ``rescue:<id>``, ``ticket:<key>``, ``batch:<k>/<n>``; ``full-refresh`` when it is one."""
    tags = [TAG, f"rescue:{ctx.request_id}"]
    if ctx.ticket:
        tags.append(f"ticket:{redact(ctx.ticket).strip()}")
    tags.append(f"batch:{ctx.batch}/{len(ctx.batches)}")
    if ctx.full_refresh:
        tags.append(FULL_REFRESH_TAG)
    return tags


def artifact_key(request_id: str, suffix: str = "") -> str:
    """A Prefect artifact key (lower-case letters, digits, dashes) for a request."""
    key = _KEY_CHARS.sub("-", f"rescue-{request_id}{'-' + suffix if suffix else ''}".lower())
    return key.strip("-")[:100]


def context_markdown(ctx: RunContext) -> str:
    """The context artifact of one batch's run."""
    n = len(ctx.batches)
    this = ctx.this
    out = [f"# Rescue `{_code(ctx.request_id)}`: batch {ctx.batch} of {n}", ""]
    if ctx.reason:
        out += [f"> {md_text(ctx.reason)}", ""]
    rows = [("Requested by", md_text(ctx.requested_by) if ctx.requested_by else "—"),
            ("Ticket", md_text(ctx.ticket) if ctx.ticket else "—"),
            ("Approved commit", _commit(ctx)),
            ("Attempt", str(ctx.attempt)),
            ("Full refresh", "**yes**" if ctx.full_refresh else "no")]
    if ctx.event_time:
        rows.append(("Event time", f"`{_code(ctx.event_time[0])}` to `{_code(ctx.event_time[1])}` "
                                   "(end exclusive)"))
    if this is not None:
        rows.append(("Estimate", _duration(this.estimated_seconds) + (" (heavy)" if this.heavy else "")))
    out += [f"- **{k}:** {v}" for k, v in rows] + [""]
    if this is not None:
        out += [f"## This batch: {_count(len(this.models))}", ""]
        out += [f"- `{_code(_name(m))}` ({_code(m)})" for m in this.models[:MAX_MODELS_LISTED]]
        if len(this.models) > MAX_MODELS_LISTED:
            out.append(f"- … and {len(this.models) - MAX_MODELS_LISTED} more")
        out.append("")
    out += ["## All batches", "", "| Batch | Models | Estimate | |", "|---:|---|---:|---|"]
    for b in ctx.batches:
        out.append(f"| {'**' + str(b.index) + '**' if b.index == ctx.batch else b.index} "
                   f"| {_models_cell(b.models)} | {_duration(b.estimated_seconds)} | {_position(ctx, b)} |")
    out.append("")
    links = [("Audit trail", ctx.audit_url), ("Pull request", ctx.pr_url)]
    shown = [f"- {label}: {_link(url)}" for label, url in links if url]
    if shown:
        out += ["## Links", "", *shown, ""]
    return "\n".join(out)


def result_markdown(summary: Mapping[str, Any]) -> str:
    """The result artifact, from the flow's ``summary.json`` data: counts, failed and skipped nodes."""
    status = str(summary.get("status") or "unknown")
    counts = summary.get("counts") or {}
    failed = [f for f in summary.get("failed") or () if isinstance(f, Mapping)]
    skipped = [str(s) for s in summary.get("skipped") or ()]
    rebuilt = [str(s) for s in summary.get("rebuilt") or ()]
    verdict = {"success": "succeeded", "failed": "FAILED"}.get(status, status)
    out = [f"# dbt build {verdict}", ""]
    if counts:
        out += [", ".join(f"{md_text(str(k))}: {int(v)}" for k, v in sorted(counts.items())), ""]
    if summary.get("error") and not failed:
        out += ["**Error:**", "", _block(str(summary["error"])), ""]
    if rebuilt:
        out += [f"## Rebuilt ({len(rebuilt)})", "", *_nodes(rebuilt), ""]
    if failed:
        out += [f"## Failed ({len(failed)})", ""]
        for f in failed[:MAX_NODES_LISTED]:
            out.append(f"- `{_code(str(f.get('unique_id')))}` ({md_text(str(f.get('status')))})")
        if len(failed) > MAX_NODES_LISTED:
            out.append(f"- … and {len(failed) - MAX_NODES_LISTED} more")
        first = next((str(f.get("message")) for f in failed if f.get("message")), None)
        if first:
            out += ["", "First dbt message:", "", _block(first)]
        out.append("")
    if skipped:
        out += [f"## Skipped ({len(skipped)})", "", *_nodes(skipped), ""]
    catalog = summary.get("catalog")
    if catalog:
        out += [f"Catalog: {md_text(str(catalog))}", ""]
    return "\n".join(out)


def web_links(repository_url: str | None, *, request_id: str, audit_branch: str, commit: str | None,
              commit_message: str | None = None) -> dict[str, str | None]:
    """``commit_url``, ``audit_url`` and ``pr_url`` for a repository's web address (GitHub or GitLab style).

    The pull request is read from the approving commit's message: a GitHub merge or squash
    commit names it ``#N``, a GitLab merge commit ``!N``. Unknown parts are None.
    """
    out: dict[str, str | None] = {"commit_url": None, "audit_url": None, "pr_url": None}
    if not repository_url:
        return out
    base = redact_url(repository_url).rstrip("/").removesuffix(".git")
    gitlab = "gitlab" in base.split("/")[2] if base.count("/") >= 2 else False
    sep = "/-/" if gitlab else "/"
    if commit:
        out["commit_url"] = f"{base}{sep}commit/{commit}"
    out["audit_url"] = f"{base}{sep}tree/{audit_branch}/events/{request_id}"
    msg = commit_message or ""
    found = (re.search(r"See merge request \S*!(\d+)", msg) or re.search(r"!(\d+)\b", msg)) if gitlab \
        else (re.search(r"Merge pull request #(\d+)", msg) or re.search(r"\(#(\d+)\)", msg))
    if found:
        out["pr_url"] = f"{base}{sep}merge_requests/{found.group(1)}" if gitlab \
            else f"{base}/pull/{found.group(1)}"
    return out


# ---- helpers -------------------------------------------------------------------------------

def _position(ctx: RunContext, b: PlannedBatch) -> str:
    if b.index == ctx.batch:
        return "**this run**"
    if b.index in ctx.done:
        return "done"
    return "before" if b.index < ctx.batch else "next" if b.index == ctx.batch + 1 else "later"


def _commit(ctx: RunContext) -> str:
    if not ctx.commit:
        return "—"
    short = _code(ctx.commit[:12])  # a link's text is plain: code spans show their backticks there
    return f"[{short}]({_url(ctx.commit_url)})" if ctx.commit_url else f"`{short}`"


def _link(url: str) -> str:
    safe = _url(url)
    return f"[{md_text(safe)}]({safe})"


def _url(url: str) -> str:
    return redact_url(url).replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _nodes(ids: Sequence[str]) -> list[str]:
    lines = [f"- `{_code(i)}`" for i in ids[:MAX_NODES_LISTED]]
    if len(ids) > MAX_NODES_LISTED:
        lines.append(f"- … and {len(ids) - MAX_NODES_LISTED} more")
    return lines


def _models_cell(models: Sequence[str]) -> str:
    names = [f"`{_code(_name(m))}`" for m in models]
    if len(names) <= 4:
        return ", ".join(names)
    return f"{len(names)}: {names[0]}, {names[1]} … {names[-1]}"


def _name(uid: str) -> str:
    return uid.rsplit(".", 1)[-1]


def _count(n: int) -> str:
    return f"{n} model" if n == 1 else f"{n} models"


def _duration(seconds: float) -> str:
    return "~" + duration(seconds)


def md_text(text: str) -> str:
    """Untrusted text in markdown: redacted, no HTML, no mentions, no table breaks."""
    text = redact(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("@", "@\u200b").replace("[", "\\[").replace("]", "\\]")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(text: str) -> str:
    return redact(text).replace("`", "'").replace("\n", " ")


def _block(text: str) -> str:
    body = redact(text).replace("```", "'''")
    return "```\n" + body[:2000] + "\n```"
