"""Trusted policy: `rescue validate --base-ref` judges by the base branch's rescue.yaml (real git).

The pull-request test builds a repository in tmp with GitPython: ``main`` holds a strict
policy; a PR commit adds a rule-breaking request AND weakens the policy. Validated against
``main``, the request is still rejected and the policy change is flagged for the owners.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import git
import pytest

from rescue_runner.adapters.git import read_at_ref, repo_root
from rescue_runner.cli import main
from rescue_runner.errors import RescueError

NOW = "2026-11-23T12:00:00Z"
STRICT = """\
version: 1
dbt:
  project_dir: project
  manifest: artifacts/manifest.json
# the policy the pull request is judged by
policy:
  owners: ["@data-platform", "@sre-lead"]
  approvers: ["@data-platform-lead"]
  heavy: {meta_key: rescue.heavy}
  quiet_windows:
    allow: [{name: nightly, timezone: Europe/Berlin, start: "22:00", end: "06:00"}]
  request: {ticket_required: true, reason_min_length: 20}
"""
NIGHTLY = '    allow: [{name: nightly, timezone: Europe/Berlin, start: "22:00", end: "06:00"}]\n'
WEAKENED = (STRICT.replace("ticket_required: true", "ticket_required: false")
            .replace(NIGHTLY, "    allow: []\n"))
BREAKING = """\
version: 1
reason: Revenue logic changed; rebuild mart_revenue from scratch right now.
requested_by: "@ben"
select: mart_revenue
full_refresh: true
"""


def run_cli(root: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.chdir(root)
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def commit(repo: git.Repo, files: dict[str, str], message: str) -> None:
    root = Path(repo.working_tree_dir or ".")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    repo.index.add(list(files))
    author = git.Actor("Test", "test@example.com")
    repo.index.commit(message, author=author, committer=author)


def new_repo(root: Path, files: dict[str, str]) -> git.Repo:
    repo = git.Repo.init(root, initial_branch="main")
    commit(repo, {**files, "rescues/README.md": "requests\n"}, "base")
    return repo


# ---- the adapter and the error paths (no dbt involved) ----------------------------------

def test_read_at_ref_and_its_errors(tmp_path: Path) -> None:
    repo = new_repo(tmp_path, {"rescue.yaml": STRICT})
    commit(repo, {"rescue.yaml": WEAKENED}, "weaken")
    assert repo_root(tmp_path / "rescues") == tmp_path.resolve()
    assert read_at_ref(tmp_path, "main~1", "rescue.yaml") == STRICT.encode()
    assert read_at_ref(tmp_path, "HEAD", "rescue.yaml") == WEAKENED.encode()
    with pytest.raises(RescueError, match="does not name a commit"):
        read_at_ref(tmp_path, "origin/main", "rescue.yaml")
    with pytest.raises(RescueError, match="is not a git ref"):
        read_at_ref(tmp_path, "--output=/tmp/x", "rescue.yaml")
    with pytest.raises(RescueError, match="does not exist at main"):
        read_at_ref(tmp_path, "main", "nested/rescue.yaml")
    with pytest.raises(RescueError, match="inside the repository"):
        read_at_ref(tmp_path, "main", "../rescue.yaml")
    with pytest.raises(RescueError, match="not a regular file"):
        read_at_ref(tmp_path, "main", "rescues")
    with pytest.raises(RescueError, match="not inside a git repository"):
        repo_root(tmp_path.parent)


@pytest.mark.parametrize(("ref", "files", "needle"), [
    ("origin/main", {"rescue.yaml": STRICT}, "git ref 'origin/main' does not name a commit"),
    ("main", {"other.txt": "x\n"}, "rescue.yaml does not exist at main"),
    ("main", {"rescue.yaml": "version: 1\npolicy:\n  enforcement: {RR999: hard}\n"},
     "the base branch's configuration is invalid"),
])
def test_missing_ref_or_file_is_exit_2(tmp_path: Path, ref: str, files: dict[str, str], needle: str) -> None:
    new_repo(tmp_path, files)
    (tmp_path / "rescue.yaml").write_text(STRICT, encoding="utf-8")
    code, out, err = run_cli(tmp_path, "validate", "--base-ref", ref, "--now", NOW)
    assert code == 2, out + err
    assert needle in err and "Traceback" not in err


def test_policy_change_is_flagged_naming_base_owners(tmp_path: Path) -> None:
    repo = new_repo(tmp_path, {"rescue.yaml": STRICT})
    repo.git.checkout("-b", "pr")
    commit(repo, {"rescue.yaml": WEAKENED.replace('"@sre-lead"', '"@me"')}, "weaken the policy")
    code, out, _ = run_cli(tmp_path, "validate", "--base-ref", "main", "--format", "json", "--now", NOW)
    assert code == 0  # RR190 is advisory by default: CODEOWNERS enforce the owners' review
    [f] = json.loads(out)["config_findings"]
    assert (f["code"], f["severity"], f["path"], f["line"]) == ("RR190", "warning", "rescue.yaml", 6)
    assert "@data-platform, @sre-lead" in f["message"] and "@me" not in f["message"]


def test_cosmetic_change_is_not_a_policy_change(tmp_path: Path) -> None:
    repo = new_repo(tmp_path, {"rescue.yaml": STRICT})
    commit(repo, {"rescue.yaml": STRICT.replace("# the policy", "# reformatted: the policy")
                  .replace("{ticket_required: true, reason_min_length: 20}",
                           "\n    reason_min_length: 20\n    ticket_required: true")}, "cosmetics")
    code, out, _ = run_cli(tmp_path, "validate", "--base-ref", "main~1", "--format", "json", "--now", NOW)
    assert code == 0 and "config_findings" not in json.loads(out)


def test_broken_working_tree_config_still_uses_the_base(tmp_path: Path) -> None:
    new_repo(tmp_path, {"rescue.yaml": STRICT.replace("policy:", "policy:\n  enforcement: {RR190: hard}")})
    (tmp_path / "rescue.yaml").write_text("version: 1\npolicy: [\n", encoding="utf-8")
    code, out, _ = run_cli(tmp_path, "validate", "--base-ref", "main", "--now", NOW)
    assert code == 1
    assert "rescue.yaml:3: error RR190 rescue.yaml in this change is invalid (YAML syntax error" in out
    assert "@data-platform, @sre-lead" in out


# ---- the pull request: a breaking request plus a weakened policy ----------------------------

@pytest.mark.slow
def test_pull_request_cannot_weaken_the_policy_it_is_judged_by(example_build: Any, tmp_path: Path) -> None:
    (tmp_path / "artifacts").mkdir()
    shutil.copy(example_build.manifest_path, tmp_path / "artifacts" / "manifest.json")
    shutil.copytree(example_build.project_dir, tmp_path / "project",
                    ignore=shutil.ignore_patterns("target", "logs"))
    repo = new_repo(tmp_path, {"rescue.yaml": STRICT})
    repo.git.checkout("-b", "pr/rebuild-revenue")
    commit(repo, {"rescue.yaml": WEAKENED, "rescues/2026-11-23-rebuild-revenue.yaml": BREAKING},
           "rebuild revenue now (and relax the policy)")

    # judged by the PR's own (weakened) policy, the request would pass
    code, out, _ = run_cli(tmp_path, "validate", "--format", "json", "--now", NOW)
    assert code == 0, out

    code, out, _ = run_cli(tmp_path, "validate", "--base-ref", "main", "--format", "json", "--now", NOW)
    assert code == 1
    doc = json.loads(out)
    [req] = doc["requests"]
    errors = {(f["code"], f["line"]) for f in req["findings"] if f["severity"] == "error"}
    assert errors == {("RR101", 1), ("RR301", 5)}
    assert req["models"] == ["model.lakehouse.mart_revenue"]
    [change] = doc["config_findings"]
    assert change["code"] == "RR190" and change["path"] == "rescue.yaml" and change["line"] == 6
    assert "needs review by the policy owners: @data-platform, @sre-lead" in change["message"]

    code, md, _ = run_cli(tmp_path, "validate", "--base-ref", "main", "--format", "markdown", "--now", NOW)
    assert code == 1
    assert "### Configuration" in md and "| ⚠️ | RR190 | `rescue.yaml:6` | no |" in md
    assert "| ❌ | RR101 | `rescues/2026-11-23-rebuild-revenue.yaml:1` | yes (hard) |" in md
