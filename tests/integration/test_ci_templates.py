"""The CI files `rescue init` writes: checked by real linters (check-jsonschema's vendored
GitHub and GitLab schemas, actionlint with shellcheck), scanned for untrusted values in shell
lines, and the pull-request workflow's shell steps run for real against two git checkouts
holding hostile file names and a symbolic link."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rescue_runner import scaffold

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MARKER = "<!-- rescue-runner:validate -->"


def tool(name: str) -> str:
    path = BIN / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ci")
    (root / "transform").mkdir()
    (root / "transform" / "dbt_project.yml").write_text("name: x\n")
    files = scaffold.plan_init(root, root / "transform", ci=scaffold.CI_SYSTEMS, timezone="Europe/Berlin",
                               branch="main", pip_spec="rescue-runner==0.1.0")
    scaffold.write_files(root, files)
    return root


def load(path: Path) -> Any:
    # BaseLoader: GitHub's `on:` must stay a string key (YAML 1.1 would make it True).
    return yaml.load(path.read_text(), Loader=yaml.BaseLoader)


GITHUB = (".github/workflows/rescue-validate.yml", ".github/workflows/rescue-apply.yml")
GITLAB = ".gitlab/rescue.gitlab-ci.yml"


@pytest.mark.parametrize("rel", GITHUB)
def test_github_workflow_schema(written: Path, rel: str) -> None:
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           str(written / rel)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gitlab_ci_schema(written: Path) -> None:
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci",
                           str(written / GITLAB)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_with_shellcheck(written: Path) -> None:
    shellcheck = tool("shellcheck")
    env = {**os.environ, "PATH": f"{Path(shellcheck).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    files = [str(written / r) for r in GITHUB]
    proc = subprocess.run([tool("actionlint"), "-shellcheck", shellcheck, *files],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_an_injection(tmp_path: Path) -> None:
    """The linter really looks at run: lines (so the test above means something)."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo \"${{ github.event.pull_request.title }}\"\n")
    proc = subprocess.run([tool("actionlint"), str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "potentially untrusted" in proc.stdout


@pytest.mark.parametrize("rel", GITHUB)
def test_no_expression_is_expanded_into_a_shell_line(written: Path, rel: str) -> None:
    """Stricter than actionlint: no `${{ }}` at all in run: (values come in through env:)."""
    doc = load(written / rel)
    runs = [s["run"] for job in doc["jobs"].values() for s in job["steps"] if "run" in s]
    assert runs
    for script in runs:
        assert "${{" not in script, script


def test_validate_workflow_permissions_and_trigger(written: Path) -> None:
    doc = load(written / GITHUB[0])
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert list(doc["on"]) == ["pull_request"]  # never pull_request_target
    steps = doc["jobs"]["validate"]["steps"]
    checkouts = [s for s in steps if s.get("uses", "").startswith("actions/checkout")]
    assert [c["with"]["path"] for c in checkouts] == ["base", "head"]
    assert all(c["with"]["persist-credentials"] == "false" for c in checkouts)
    apply = load(written / GITHUB[1])
    assert apply["on"]["schedule"] == [{"cron": "*/10 * * * *"}] and "workflow_dispatch" in apply["on"]
    assert apply["concurrency"]["group"] == "rescue-apply"
    env = apply["jobs"]["apply"]["steps"][-1]["env"]
    assert env["PREFECT_API_URL"] == "${{ secrets.PREFECT_API_URL }}"


UNTRUSTED_GITLAB = ("CI_MERGE_REQUEST_TITLE", "CI_MERGE_REQUEST_DESCRIPTION", "CI_COMMIT_MESSAGE",
                    "CI_COMMIT_TITLE", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_REF_NAME",
                    "CI_COMMIT_BRANCH_NAME")


def test_gitlab_scripts_pass_shellcheck_and_use_no_untrusted_values(written: Path, tmp_path: Path) -> None:
    doc = load(written / GITLAB)
    for job in ("rescue-validate", "rescue-apply"):
        script = "\n".join(doc[job]["script"])
        for name in UNTRUSTED_GITLAB:
            assert name not in script, (job, name)
        path = tmp_path / f"{job}.sh"
        path.write_text("#!/usr/bin/env bash\n" + script + "\n")
        proc = subprocess.run([tool("shellcheck"), "--shell=bash", str(path)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stdout


# --- the pull-request workflow's shell steps, run for real -------------------------------------------

def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _step(doc: Any, name_start: str) -> dict[str, Any]:
    steps = doc["jobs"]["validate"]["steps"]
    return next(s for s in steps if s.get("name", "").startswith(name_start))


def _run_step(step: dict[str, Any], workspace: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """As GitHub runs a bash `run:` step: bash --noprofile --norc -eo pipefail <file>."""
    script = workspace / "step.sh"
    script.write_text(step["run"])
    cwd = workspace / step.get("working-directory", ".")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd,
                          env={**env, **step.get("env", {})}, capture_output=True, text=True, timeout=300,
                          check=False)


def base_and_pull_request(ws: Path) -> tuple[Path, str, Path]:
    """A dbt repository after `rescue init --ci github` (the base, committed) and a clone of it as
    the pull request's checkout: (base folder, base commit, head folder)."""
    from test_onboarding import make_dbt_repo

    from rescue_runner.cli import main

    base = make_dbt_repo(ws / "base")
    cwd = Path.cwd()
    os.chdir(base)
    try:
        assert main(["init", "--ci", "github", "--timezone", "UTC"]) == 0
    finally:
        os.chdir(cwd)
    _git(base, "add", "-A")
    _git(base, "commit", "-qm", "rescue init")
    base_sha = _git(base, "rev-parse", "HEAD")
    head = ws / "head"
    _git(ws, "clone", "-q", str(base), str(head))
    _git(head, "config", "user.name", "Pull Request")
    _git(head, "config", "user.email", "pr@example.com")
    return base, base_sha, head


@pytest.mark.slow
def test_validate_workflow_steps_treat_pull_request_files_as_data(tmp_path: Path) -> None:


    ws = tmp_path / "workspace"
    ws.mkdir()
    cwd = Path.cwd()
    base, base_sha, head = base_and_pull_request(ws)
    ok = head / "rescues" / "2026-11-23-int-orders.yaml"
    ok.write_text("version: 1\nreason: \"int_orders double-counted refunds; rebuild downstream\"\n"
                  "requested_by: pr@example.com\nselect: int_orders+\nbatches:\n  max_models: 3\n")
    hostile = ["a$(touch PWNED).yaml", "b`touch PWNED2`.yaml", "c\nd.yaml", "e;touch PWNED3;.yaml"]
    for name in hostile:
        (head / "rescues" / name).write_text("version: 1\n")
    (head / "rescues" / "leak.yaml").symlink_to("/etc/hostname")
    cfg = (head / "rescue.yaml").read_text().replace("reason_min_length: 10", "reason_min_length: 1")
    (head / "rescue.yaml").write_text(cfg)
    _git(head, "add", "-A")
    _git(head, "commit", "-qm", "requests")
    head_sha = _git(head, "rev-parse", "HEAD")

    doc = load(REPO / "src" / "rescue_runner" / "templates" / "github" / "rescue-validate.yml")
    output = ws / "github_output"
    output.write_text("")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GITHUB_OUTPUT": str(output),
           "MARKER": MARKER, "BASE_SHA": base_sha, "HEAD_SHA": head_sha,
           "LAKEHOUSE_DB": str(tmp_path / "lakehouse.duckdb")}
    env = {k: v.replace("${{ github.event.pull_request.base.sha }}", base_sha)
           .replace("${{ github.event.pull_request.head.sha }}", head_sha) for k, v in env.items()}
    copy = _step(doc, "Copy the changed request files")
    copy["env"] = {"BASE_SHA": base_sha, "HEAD_SHA": head_sha}
    proc = _run_step(copy, ws, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not a regular file; skipped" in proc.stdout  # the symbolic link
    assert not (base / "rescues" / "leak.yaml").exists()
    validate = _step(doc, "Validate with the base branch")
    validate["env"] = {"BASE_SHA": base_sha}
    proc = _run_step(validate, ws, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    for pwned in ("PWNED", "PWNED2", "PWNED3"):
        assert not list(tmp_path.rglob(pwned)) and not (cwd / pwned).exists(), pwned
    assert "status=1" in output.read_text()
    assert "::error file=rescues/2026-11-23-int-orders.yaml" not in proc.stdout  # the good request is fine
    assert "rescues/2026-11-23-int-orders.yaml: ok" in proc.stdout
    assert "5 request(s) checked, 4 with errors" in proc.stdout  # the four hostile names, as data
    assert "title=RR190" in proc.stdout  # annotations
    report = (ws / "report.md").read_text()
    assert report.startswith(MARKER)
    assert "RR190" in report and "2026-11-23-int-orders" in report
    # The base checkout's own rescue.yaml (the trusted one) is what git holds at the base SHA.
    assert _git(base, "show", f"{base_sha}:rescue.yaml").count("reason_min_length: 10") == 1


@pytest.mark.slow
def test_validate_workflow_says_which_tables_a_model_change_leaves_stale(tmp_path: Path) -> None:
    """A pull request edits int_orders.sql (with Jinja dbt could not even parse) and adds a model:
    the comment names the stale production tables and the request to add, from the BASE graph;
    once the pull request carries a covering request, the comment says so."""


    ws = tmp_path / "workspace"
    ws.mkdir()
    base, base_sha, head = base_and_pull_request(ws)
    sql = head / "transform" / "models" / "intermediate" / "int_orders.sql"
    # Parsing this (or running anything of the pull request) would fail or leave PWNED behind.
    sql.write_text(sql.read_text() + "\n-- {{ run_query('select 1') }} {% do exceptions.raise('PWNED') %}\n")
    (head / "transform" / "models" / "marts" / "mart_new.sql").write_text("select 1 as x {{ broken\n")
    _git(head, "add", "-A")
    _git(head, "commit", "-qm", "model change")
    head_sha = _git(head, "rev-parse", "HEAD")

    doc = load(REPO / "src" / "rescue_runner" / "templates" / "github" / "rescue-validate.yml")
    rendered = load(base / ".github" / "workflows" / "rescue-validate.yml")
    assert "transform/**" in rendered["on"]["pull_request"]["paths"]  # model pull requests run it too
    output = ws / "github_output"
    output.write_text("")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GITHUB_OUTPUT": str(output),
           "MARKER": MARKER, "LAKEHOUSE_DB": str(tmp_path / "lakehouse.duckdb")}

    def run_steps(head_sha: str) -> str:
        (ws / "report.md").unlink(missing_ok=True)
        for name in ("Copy the changed request files", "Validate with the base branch", "Model changes"):
            step = _step(doc, name)
            step["env"] = {"BASE_SHA": base_sha, "HEAD_SHA": head_sha}
            proc = _run_step(step, ws, env)
            assert proc.returncode == 0, (name, proc.stdout + proc.stderr)
            assert "::warning::rescue changes could not run" not in proc.stdout, proc.stderr
        return (ws / "report.md").read_text()

    report = run_steps(head_sha)
    assert report.startswith(MARKER) and "<!-- rescue-runner:changes -->" in report
    assert "**8 production table(s) hold the old logic**" in report
    for table in ("int_orders", "int_customer_orders", "mart_revenue", "mart_finance_summary"):
        assert f"`{table}`" in report
    assert "`stg_orders`" not in report  # upstream views stay as they are
    assert "- `transform/models/marts/mart_new.sql`" in report  # new files: by path
    assert "No rescue request in this pull request rebuilds them" in report
    assert 'select: "int_orders+"' in report and "rescue new --changed BASE..HEAD" in report
    assert not list(tmp_path.rglob("PWNED")) and not (base / "target" / "run").exists()

    # The author adds the suggested request: the comment confirms it covers the stale tables.
    rid = "2026-11-23-int-orders"
    (head / "rescues" / f"{rid}.yaml").write_text(
        "version: 1\nreason: \"int_orders changed; rebuild what is built from it\"\n"
        "requested_by: pr@example.com\nselect: int_orders+\nbatches:\n  max_models: 3\n")
    _git(head, "add", "-A")
    _git(head, "commit", "-qm", "request")
    report = run_steps(_git(head, "rev-parse", "HEAD"))
    assert f"Covered: `{rid}` in this pull request rebuilds all of them" in report
    assert "No rescue request in this pull request" not in report


@pytest.mark.slow
def test_templates_ship_in_the_wheel(tmp_path: Path) -> None:
    """`rescue init` of an installed (non-editable) rescue-runner finds its templates."""
    import zipfile

    src = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(REPO), str(src)], check=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", ".", "-w", str(tmp_path)],
                          cwd=src, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("rescue_runner-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    ci = [name for files in scaffold.CI_FILES.values() for name in files]
    for rel in ("rescue.yaml", "rescues-README.md", *ci):
        assert f"rescue_runner/templates/{rel}" in names, rel
