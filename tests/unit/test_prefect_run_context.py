"""Tags and markdown artifacts of a rescue flow run (pure rendering)."""

from __future__ import annotations

from rescue_runner.model import PlannedBatch
from rescue_runner.redact import register_secret
from rescue_runner.reporting.prefect_run import (
    RunContext,
    artifact_key,
    context_markdown,
    result_markdown,
    run_tags,
    web_links,
)

PLAN = (
    PlannedBatch(1, ("model.lakehouse.int_orders", "model.lakehouse.int_customer_orders"),
                 estimated_seconds=95.0),
    PlannedBatch(2, ("model.lakehouse.mart_revenue",), True, estimated_seconds=1900.0, heavy=True),
    PlannedBatch(3, ("model.lakehouse.mart_customers",), estimated_seconds=4.2),
)
SECRET = "ghp_plantedTokenValue1234"


def _ctx(**kw: object) -> RunContext:
    base: dict[str, object] = dict(
        request_id="2026-11-23-int-orders-hotfix", batch=2, batches=PLAN,
        reason="refunds double-counted; see https://bot:hunter2pass@git.example.com/acme/x.git <b>now</b>",
        requested_by="ana.engineer", ticket="DATA-1412", commit="0123456789abcdef0123456789abcdef01234567",
        done=frozenset({1}), audit_url="https://github.com/acme/a/tree/rescue-audit/events/x",
        pr_url="https://github.com/acme/a/pull/7")
    base.update(kw)
    return RunContext(**base)  # type: ignore[arg-type]


def test_tags_name_request_ticket_batch_and_full_refresh() -> None:
    assert run_tags(_ctx()) == ["rescue", "rescue:2026-11-23-int-orders-hotfix", "ticket:DATA-1412",
                                "batch:2/3", "full-refresh"]
    assert run_tags(_ctx(batch=1, ticket=None)) == ["rescue", "rescue:2026-11-23-int-orders-hotfix",
                                                    "batch:1/3"]


def test_context_markdown_says_why_who_what_and_what_comes_next() -> None:
    md = context_markdown(_ctx())
    assert md.startswith("# Rescue `2026-11-23-int-orders-hotfix`: batch 2 of 3\n")
    assert "- **Requested by:** ana.engineer" in md and "- **Ticket:** DATA-1412" in md
    assert "- **Approved commit:** `0123456789ab`" in md
    assert "- **Full refresh:** **yes**" in md and "- **Estimate:** ~31m40s (heavy)" in md
    assert "## This batch: 1 model\n\n- `mart_revenue` (model.lakehouse.mart_revenue)" in md
    assert "| 1 | `int_orders`, `int_customer_orders` | ~1m35s | done |" in md
    assert "| **2** | `mart_revenue` | ~31m40s | **this run** |" in md
    assert "| 3 | `mart_customers` | ~4.2s | next |" in md
    assert "- Pull request: [https://github.com/acme/a/pull/7](https://github.com/acme/a/pull/7)" in md
    assert "<b>" not in md and "&lt;b&gt;" in md


def test_no_secret_in_tags_or_artifacts() -> None:
    register_secret(SECRET)
    ctx = _ctx(reason=f"token {SECRET} leaked", ticket=f"DATA-1 {SECRET}")
    out = context_markdown(ctx) + " ".join(run_tags(ctx)) + context_markdown(_ctx())
    out += result_markdown({"status": "failed", "error": f"clone https://x:{SECRET}@h/r failed",
                            "failed": [{"unique_id": "model.p.a", "status": "error",
                                        "message": f"auth {SECRET} https://u:hunter2pass@h/r"}]})
    assert SECRET not in out and "hunter2pass" not in out
    assert "https://git.example.com/acme/x.git" in context_markdown(_ctx())


def test_result_markdown_lists_rebuilt_failed_skipped_with_first_dbt_message() -> None:
    md = result_markdown({"status": "failed", "counts": {"error": 1, "skipped": 1, "success": 2},
                          "rebuilt": ["model.p.a", "model.p.b"], "skipped": ["model.p.d"],
                          "failed": [
                              {"unique_id": "model.p.c", "status": "error", "message": "Binder Error: x"},
                              {"unique_id": "test.p.t", "status": "fail", "message": "Got 2 results"}]})
    assert md.startswith("# dbt build FAILED\n\nerror: 1, skipped: 1, success: 2\n")
    assert "## Rebuilt (2)\n\n- `model.p.a`\n- `model.p.b`" in md
    assert "## Failed (2)\n\n- `model.p.c` (error)\n- `test.p.t` (fail)\n\nFirst dbt message:\n\n" \
           "```\nBinder Error: x\n```" in md
    assert "## Skipped (1)\n\n- `model.p.d`" in md


def test_artifact_keys_are_prefect_keys() -> None:
    assert artifact_key("2026-11-23-Int_orders.v2") == "rescue-2026-11-23-int-orders-v2"
    assert artifact_key("r1", "result") == "rescue-r1-result"


def test_web_links_github_and_gitlab() -> None:
    gh = web_links("https://github.com/acme/analytics.git", request_id="r1", audit_branch="rescue-audit",
                   commit="abc", commit_message="Merge pull request #42 from acme/rescue")
    assert gh == {"commit_url": "https://github.com/acme/analytics/commit/abc",
                  "audit_url": "https://github.com/acme/analytics/tree/rescue-audit/events/r1",
                  "pr_url": "https://github.com/acme/analytics/pull/42"}
    assert web_links("https://github.com/a/b", request_id="r", audit_branch="x", commit="c",
                     commit_message="fix int_orders (#7)")["pr_url"] == "https://github.com/a/b/pull/7"
    gl = web_links("https://gitlab.com/acme/analytics", request_id="r1", audit_branch="rescue-audit",
                   commit="abc", commit_message="Merge branch 'x'\n\nSee merge request acme/analytics!9")
    assert gl["pr_url"] == "https://gitlab.com/acme/analytics/-/merge_requests/9"
    assert gl["audit_url"] == "https://gitlab.com/acme/analytics/-/tree/rescue-audit/events/r1"
    assert web_links(None, request_id="r", audit_branch="x", commit="c") == \
        {"commit_url": None, "audit_url": None, "pr_url": None}
