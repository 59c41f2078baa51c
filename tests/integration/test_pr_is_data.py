"""PR-side checks never execute PR code: a pull request whose dbt project carries an env_var
secret, a run_query, an on-run-start hook and a target-path outside the repository is
validated through the shipped workflow's steps and through the documented local command
(`rescue validate --base-ref REF`): no PR Jinja runs, nothing is written outside, the secret is
in no output, and no --format github line is a raw workflow command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_ci_templates import MARKER, REPO, _git, _run_step, _step, base_and_pull_request, load

BIN = Path(sys.executable).parent
SECRET = "s3cr3t-" + "value-4242"
EVIL = "x\n::error file=evil.sql::pwned"


def _commands(text: str) -> list[str]:
    """Lines the Actions runner would act on (a workflow command starts a line, after blanks)."""
    return [line for line in text.splitlines() if re.match(r"\s*(::|##\[)", line)]


def _ours(line: str) -> bool:
    """Our own annotations: a level, then a file property that holds no raw ':' or newline."""
    pattern = r"::(error|warning|notice) file=[^:,\r\n]*(,line=\d+)?,title=RR\d{3}::.*"
    return re.fullmatch(pattern, line) is not None


@pytest.fixture(scope="module")
def pr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A base repository (rescue init'ed) and a pull request checkout with hostile dbt code."""


    tmp = tmp_path_factory.mktemp("pr")
    ws = tmp / "workspace"
    ws.mkdir()
    base, base_sha, head = base_and_pull_request(ws)
    outside = tmp / "outside"
    proj = head / "transform"
    text = (proj / "dbt_project.yml").read_text()
    text = re.sub(r"(?m)^target-path:.*\n", "", text)
    hook = "{{ run_query(\\\"COPY (SELECT 1) TO '" + str(outside / "hook.csv") + "'\\\") }}"
    (proj / "dbt_project.yml").write_text(
        text + f"target-path: \"{outside / 'target'}\"\n" + f"on-run-start:\n  - \"{hook}\"\n")
    sql = proj / "models" / "intermediate" / "int_orders.sql"
    sql.write_text("{{ log('LEAK ' ~ env_var('SECRET', 'none'), info=True) }}\n"
                   "{% set r = run_query(\"COPY (SELECT 1) TO '" + str(outside / "query.csv") + "'\") %}\n"
                   + sql.read_text())
    (head / "rescues" / "2026-11-23-int-orders.yaml").write_text(
        "version: 1\nreason: \"int_orders double-counted refunds; rebuild downstream\"\n"
        "requested_by: pr@example.com\nselect: int_orders+\nbatches:\n  max_models: 3\n")
    (head / "rescues" / f"{EVIL}.yaml").write_text("version: 1\n")
    _git(head, "add", "-A")
    _git(head, "commit", "-qm", "hostile pull request")
    return {"ws": ws, "base": base, "head": head, "outside": outside, "base_sha": base_sha,
            "head_sha": _git(head, "rev-parse", "HEAD"), "db": str(tmp / "lakehouse.duckdb")}


def _env(pr: dict[str, Path | str]) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "SECRET": SECRET,
            "LAKEHOUSE_DB": str(pr["db"]), "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def _assert_nothing_ran(pr: dict[str, Path | str], *outputs: str) -> None:
    for out in outputs:
        assert SECRET not in out and "LEAK" not in out
    assert not Path(pr["outside"]).exists(), "the PR's dbt project was parsed or run"


@pytest.mark.slow
def test_documented_local_command_never_parses_the_pull_requests_project(pr: dict[str, Path | str]) -> None:
    head, env = Path(pr["head"]), _env(pr)
    outs = []
    for fmt in ("markdown", "github"):
        proc = subprocess.run(["rescue", "validate", "--base-ref", str(pr["base_sha"]), "--format", fmt,
                               "rescues/"], cwd=head, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr  # the EVIL file is not a valid request
        outs += [proc.stdout, proc.stderr]
        if fmt == "github":
            assert "rescues/2026-11-23-int-orders.yaml: ok" in proc.stdout
            assert all(_ours(line) for line in _commands(proc.stdout + proc.stderr)), proc.stdout
    _assert_nothing_ran(pr, *outs)
    # dbt parsed the base commit's tree (cached inside .git), never the checkout's project.
    written = [p for p in head.rglob("manifest.json") if ".git" not in p.relative_to(head).parts]
    assert written == [] and list((head / ".git" / "rescue-runner" / "trees").glob(f"{pr['base_sha']}/*"))


@pytest.mark.slow
def test_shipped_workflow_steps_never_run_pull_request_code(pr: dict[str, Path | str]) -> None:
    ws, base_sha, head_sha = Path(pr["ws"]), str(pr["base_sha"]), str(pr["head_sha"])
    doc = load(REPO / "src" / "rescue_runner" / "templates" / "github" / "rescue-validate.yml")
    output = ws / "github_output"
    output.write_text("")
    env = {**_env(pr), "GITHUB_OUTPUT": str(output), "MARKER": MARKER}
    outs = []
    for name in ("Copy the changed request files", "Validate with the base branch"):
        step = _step(doc, name)
        step["env"] = {"BASE_SHA": base_sha, "HEAD_SHA": head_sha}
        proc = _run_step(step, ws, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outs += [proc.stdout, proc.stderr]
        assert all(_ours(line) for line in _commands(proc.stdout + proc.stderr)), proc.stdout
    assert "status=1" in output.read_text()
    report = (ws / "report.md").read_text()
    _assert_nothing_ran(pr, *outs, report)
