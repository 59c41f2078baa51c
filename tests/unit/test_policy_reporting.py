"""How policy findings render: blocking column, overrides, configuration findings (no dbt)."""

from __future__ import annotations

import json

from rescue_runner.model import Finding, Override, Request, Severity
from rescue_runner.policies import PolicyFinding
from rescue_runner.reporting.validation import render_github, render_json, render_markdown, render_text
from rescue_runner.results import RequestReport, ValidationReport

PATH = "rescues/r.yaml"
OVERRIDE = Override("RR301", "@lead", "Month-end close.")


def report(*, config: list[Finding] | None = None) -> ValidationReport:
    req = Request(id="r", path=PATH, version=1, reason="a reason long enough", requested_by="@ana",
                  select=("mart_revenue",), full_refresh=True, overrides=(OVERRIDE,))
    findings: list[Finding] = [
        PolicyFinding("RR301", Severity.WARNING, "outside quiet [overridden by @lead: Month-end close.]",
                      PATH, 5, level="soft", override=OVERRIDE),
        PolicyFinding("RR214", Severity.ERROR, "heavy unsplit", PATH, 4, level="soft"),
        PolicyFinding("RR210", Severity.ERROR, "ignored full refresh", PATH, 5, level="hard"),
        PolicyFinding("RR212", Severity.WARNING, "11 batches", PATH, 4, level="advisory"),
        Finding("RR205", Severity.WARNING, "selector matches nothing", PATH, 4),
    ]
    return ValidationReport([RequestReport(PATH, "r", findings, ["model.p.mart_revenue"], req)],
                            config_findings=config or [])


def test_markdown_says_which_findings_block_and_lists_overrides() -> None:
    md = render_markdown(report())
    assert "| | Code | Where | Blocks | Message |" in md
    assert "| ⚠️ | RR301 | `rescues/r.yaml:5` | no: overridden by @\u200blead |" in md
    assert "| ❌ | RR214 | `rescues/r.yaml:4` | yes (soft: an approver may override) |" in md
    assert "| ❌ | RR210 | `rescues/r.yaml:5` | yes (hard) |" in md
    assert "| ⚠️ | RR212 | `rescues/r.yaml:4` | no |" in md
    assert "| ⚠️ | RR205 | `rescues/r.yaml:4` | no |" in md
    assert "**Overrides recorded**" in md and "- RR301 approved by @\u200blead: Month-end close." in md
    assert "### Configuration" not in md


def test_json_carries_level_and_override_and_config_findings_only_when_present() -> None:
    doc = json.loads(render_json(report()))
    assert set(doc) == {"ok", "requests"}
    f = doc["requests"][0]["findings"][0]
    assert f["level"] == "soft" and f["override"]["approved_by"] == "@lead"
    assert "level" not in doc["requests"][0]["findings"][4]
    rr190 = PolicyFinding("RR190", Severity.WARNING, "policy changed; owners: @data-platform", "rescue.yaml",
                          34, level="advisory")
    doc = json.loads(render_json(report(config=[rr190])))
    assert doc["config_findings"][0]["code"] == "RR190"


def test_config_findings_in_every_format_and_in_ok() -> None:
    warn = PolicyFinding("RR190", Severity.WARNING, "policy changed", "rescue.yaml", 34, level="advisory")
    err = PolicyFinding("RR190", Severity.ERROR, "policy changed", "rescue.yaml", 34, level="hard")
    clean = ValidationReport([], config_findings=[warn])
    assert clean.ok and clean.findings == [warn]
    assert not ValidationReport([], config_findings=[err]).ok
    assert render_text(clean).startswith("rescue.yaml:34: warning RR190 policy changed\n")
    assert "::warning file=rescue.yaml,line=34,title=RR190::policy changed" in render_github(clean)
    md = render_markdown(ValidationReport([], config_findings=[err]))
    assert "### Configuration" in md and "| ❌ | RR190 | `rescue.yaml:34` | yes (hard) |" in md
