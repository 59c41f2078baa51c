"""Ids are used once (RR014), and --format github never prints a raw workflow command."""

from __future__ import annotations

import re
from pathlib import Path

from rescue_runner.model import Finding, Severity
from rescue_runner.pipeline import decode
from rescue_runner.reporting.validation import render_github
from rescue_runner.request import check_reused_ids
from rescue_runner.results import RequestReport, ValidationReport

EVIL = "rescues/x\n::error file=evil.sql::pwned\r##[error]legacy %0A.yaml"
GOOD = b"version: 1\nreason: a reason long enough\nrequested_by: ana\nselect: int_orders+\n"


def test_a_finished_id_with_other_content_is_a_located_finding() -> None:
    report = decode(GOOD, "rescues/2026-11-23-hotfix.yaml")
    assert report.request is not None
    req = report.request
    assert check_reused_ids([req], {}) == []
    assert check_reused_ids([req], {req.id: ("succeeded", req.content_hash)}) == []  # the same request
    # An old trail that never recorded the content (expired before validation): nothing to compare.
    assert check_reused_ids([req], {req.id: ("expired", None)}) == []
    found = check_reused_ids([req], {req.id: ("succeeded", "sha256:other")})
    assert [(f.code, f.path, f.line, f.blocking) for f in found] == [
        ("RR014", "rescues/2026-11-23-hotfix.yaml", 1, True)]
    assert "ended succeeded" in found[0].message and "choose a new id" in found[0].message


def test_github_format_prints_no_raw_workflow_command(tmp_path: Path) -> None:
    findings = [Finding("RR010", Severity.ERROR, "bad\n::warning::injected", EVIL, 2)]
    report = ValidationReport([RequestReport(EVIL, "x\n::error::id", findings)],
                              config_findings=[Finding("RR190", Severity.WARNING, "m\n::notice::x", EVIL, 1)])
    out = render_github(report)
    commands = [line for line in out.splitlines() if re.match(r"\s*(::|##\[)", line)]
    assert len(commands) == 2  # the two annotations, nothing else
    for line in commands:
        assert re.fullmatch(r"::(error|warning) file=[^:,\r\n]*,line=\d,title=RR\d{3}::.*", line), line
        assert "\r" not in line
    assert "%0A::error" not in out  # broken up: '::' never survives in plain lines
