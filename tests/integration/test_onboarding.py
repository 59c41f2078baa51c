"""`rescue init` and `rescue new` in a throwaway dbt repository (a copy of examples/lakehouse in a
fresh git repository), non-interactively through cli.main and interactively through a real
pseudo-terminal; the requests they write pass `rescue validate`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pexpect
import pytest

from rescue_runner.cli import main
from rescue_runner.config import load_config
from rescue_runner.policies import policy_from_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RESCUE = Path(sys.executable).parent / "rescue"
TODAY = date.today().isoformat()


def make_dbt_repo(root: Path) -> Path:
    """A git repository holding a copy of the example dbt project under transform/, one commit."""
    root.mkdir(parents=True)
    shutil.copytree(REPO / "examples" / "lakehouse", root / "transform",
                    ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "Ana Engineer"],
                 ["config", "user.email", "ana@example.com"], ["add", "-A"],
                 ["commit", "-qm", "dbt project"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root


@pytest.fixture
def dbt_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_dbt_repo(tmp_path / "analytics")
    monkeypatch.chdir(root)
    monkeypatch.setenv("LAKEHOUSE_DB", str(tmp_path / "lakehouse.duckdb"))
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_then_new_then_validate(dbt_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "init", "--ci", "github", "--ci", "gitlab", "--timezone", "Europe/Berlin")
    assert code == 0, err
    for rel in ("rescue.yaml", "rescues/README.md", ".github/workflows/rescue-validate.yml",
                ".github/workflows/rescue-apply.yml", ".gitlab/rescue.gitlab-ci.yml",
                "schema/rescue-request.v1.json", "schema/rescue-config.v1.json"):
        assert (dbt_repo / rel).is_file(), rel
        assert f"wrote {rel}" in out
    cfg = load_config(None)
    assert cfg.dbt.project_dir == dbt_repo / "transform"  # found by its dbt_project.yml
    assert cfg.dbt.profiles_dir == dbt_repo / "transform"
    assert cfg.audit.protected_branch == "main" and cfg.audit.branch == "rescue-audit"
    assert cfg.notifications is not None and cfg.notifications.webhook_url_env == "RESCUE_WEBHOOK_URL"
    policy = policy_from_config(cfg.policy)
    assert policy.to_dict()["quiet_windows"]["allow"][0]["timezone"] == "Europe/Berlin"

    code, out, err = run(capsys, "new", "--select", "int_orders+", "--reason",
                         "int_orders double-counted refunds; rebuild it and its marts",
                         "--ticket", "DATA-1412", "--max-models", "3", "--yes")
    assert code == 0, out + err
    path = dbt_repo / "rescues" / f"{TODAY}-int-orders.yaml"
    text = path.read_text()
    # the modeline points at the schema init placed in the repository
    assert text.startswith("# yaml-language-server: $schema=../schema/rescue-request.v1.json\n")
    assert (path.parent / "../schema/rescue-request.v1.json").resolve().is_file()
    assert 'requested_by: "Ana Engineer <ana@example.com>"' in text
    assert "batch 1" in out and "int_orders" in out  # the plan it would produce
    code, out, err = run(capsys, "validate", str(path.relative_to(dbt_repo)))
    assert code == 0, out + err
    assert "0 with errors" in out

    # The article's third scenario: a heavy full refresh inside its quiet window.
    code, out, err = run(capsys, "new", "--select", "mart_revenue", "--full-refresh",
                         "--window-daily", "01:00-05:00", "--timezone", "Europe/Berlin",
                         "--reason", "Revenue logic changed for historic orders", "--yes")
    assert code == 0, out + err
    heavy = dbt_repo / "rescues" / f"{TODAY}-mart-revenue-full-refresh.yaml"
    assert "full_refresh: true" in heavy.read_text() and '  timezone: "Europe/Berlin"' in heavy.read_text()
    code, out, err = run(capsys, "validate")  # every request in rescues/
    assert code == 0, out + err
    assert "2 request(s) checked, 0 with errors" in out


def test_init_refuses_to_overwrite_without_force(dbt_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (dbt_repo / "rescue.yaml").write_text("# ours\n")
    code, _, err = run(capsys, "init")
    assert code == 2 and "rescue.yaml: already exists" in err and "--force" in err
    assert (dbt_repo / "rescue.yaml").read_text() == "# ours\n"
    assert not (dbt_repo / "rescues").exists()  # nothing written at all
    code, _, err = run(capsys, "init", "--force", "--ci", "none", "--timezone", "UTC")
    assert code == 0, err
    assert "project_dir: transform" in (dbt_repo / "rescue.yaml").read_text()
    assert not (dbt_repo / ".github").exists()


def test_init_without_a_dbt_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "init")
    assert code == 2 and "no dbt_project.yml" in err and "--project-dir" in err


def test_new_checks_the_selection_before_writing(dbt_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "init", "--timezone", "UTC")[0] == 0
    code, _, err = run(capsys, "new", "--select", "int_ordrs+", "--reason", "a reason long enough",
                       "--yes")
    assert code == 1
    assert "RR200" in err and "Did you mean `int_orders+`?" in err and "nothing was written" in err
    assert not (dbt_repo / "rescues").exists() or not list((dbt_repo / "rescues").glob("*.yaml"))
    # A typo inside a union still writes the request, and says RR205 (validate's warning) aloud.
    code, out, err = run(capsys, "new", "--select", "int_orders int_ordrs", "--reason",
                         "a reason long enough", "--yes")
    assert code == 0, out + err
    assert "warning RR205 selector 'int_ordrs' matches no model" in out and "`int_orders`" in out


def test_new_changed_selects_the_changed_models_and_their_downstream(
        dbt_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "init", "--timezone", "UTC")[0] == 0
    subprocess.run(["git", "add", "-A"], cwd=dbt_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=dbt_repo, check=True)
    subprocess.run(["git", "checkout", "-qb", "fix"], cwd=dbt_repo, check=True)
    sql = dbt_repo / "transform" / "models" / "intermediate" / "int_orders.sql"
    sql.write_text(sql.read_text() + "\n-- refunds once\n")
    subprocess.run(["git", "commit", "-qam", "fix int_orders"], cwd=dbt_repo, check=True)
    code, out, err = run(capsys, "new", "--changed", "main..HEAD", "--max-models", "3", "--yes")
    assert code == 0, out + err
    text = (dbt_repo / "rescues" / f"{TODAY}-int-orders.yaml").read_text()
    assert 'select: "int_orders+"' in text and "int_orders changed in main..HEAD" in text
    code, _, err = run(capsys, "new", "--changed", "HEAD..HEAD", "--yes")
    assert code == 2 and "no dbt model changed" in err


def test_new_keeps_an_invalid_request_and_says_so(dbt_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "init", "--timezone", "UTC")[0] == 0
    cfg = dbt_repo / "rescue.yaml"
    cfg.write_text(cfg.read_text().replace("max_models_per_request: 100", "max_models_per_request: 2"))
    code, out, err = run(capsys, "new", "--select", "int_orders+", "--reason", "a reason long enough",
                         "--yes")
    assert code == 1, out + err
    path = dbt_repo / "rescues" / f"{TODAY}-int-orders.yaml"
    assert path.is_file() and "RR213" in out
    assert "the file is kept" in err and f"rescue validate rescues/{path.name}" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--reason", "a reason long enough"], "--select is required"),
    (["--select", "int_orders", "--reason", "short"], "at least 10 characters"),
    (["--select", "int_orders; rm -rf /", "--reason", "a reason long enough"], "not allowed in a selector"),
    (["--select", "--full-refresh", "--reason", "a reason long enough"], "starts with '-'"),
    (["--select", "path:../../etc", "--reason", "a reason long enough"], "outside the dbt project"),
    (["--select", "x", "--reason", "a reason long enough", "--window-daily", "01:00-05:00"],
     "--timezone is required"),
    (["--select", "x", "--reason", "a reason long enough", "--window-daily", "1am-5am", "--timezone", "UTC"],
     "not a daily window"),
    (["--select", "x", "--reason", "a reason long enough", "--window-daily", "01:00-05:00",
      "--timezone", "Berlin"], "not an IANA time zone"),
])
def test_new_rejects_bad_flags_without_writing(dbt_repo: Path, capsys: pytest.CaptureFixture[str],
                                                args: list[str], message: str) -> None:
    code, _, err = run(capsys, "new", *args, "--yes")
    assert code == 2 and message in err, err
    assert not (dbt_repo / "rescues").exists()


def test_new_interactive_through_a_pseudo_terminal(dbt_repo: Path) -> None:
    """The prompts of `rescue new` on a real terminal: wrong answers are refused on the spot."""
    assert main(["init", "--timezone", "UTC"]) == 0
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    child = pexpect.spawn(str(RESCUE), ["new"], cwd=str(dbt_repo), env=env, encoding="utf-8", timeout=90,
                          dimensions=(40, 200))
    try:
        child.expect_exact("Models to rescue (dbt selectors): ")
        child.sendline("int_orders; rm -rf /")
        child.expect_exact("not allowed in a selector")
        child.expect_exact("Models to rescue (dbt selectors): ")
        child.sendline("int_ordrs+")  # resolved with dbt on the spot: re-asked, with the nearest name
        child.expect_exact("Did you mean `int_orders+`?")
        child.expect_exact("Models to rescue (dbt selectors): ")
        child.sendline("int_orders+")
        child.expect_exact("Reason (what broke, what the rerun fixes): ")
        child.sendline("too short")
        child.expect_exact("at least 10 characters")
        child.sendline("int_orders double-counted refunded payments")
        child.expect_exact("Ticket (issue key or URL, empty: none): ")
        child.sendline("DATA-1412")
        child.expect_exact("Full refresh (rebuild incremental models from scratch)? [y/N]: ")
        child.sendline("n")
        child.expect_exact("At most how many models per batch (empty: no split): ")
        child.sendline("many")
        child.expect_exact("not a whole number")
        child.sendline("3")
        child.expect_exact("Daily window HH:MM-HH:MM (empty: any time): ")
        child.sendline("")
        child.expect_exact('requested_by: "Ana Engineer <ana@example.com>"')
        child.expect_exact("Write it? [Y/n]: ")
        child.sendline("y")
        child.expect_exact(f"wrote rescues/{TODAY}-int-orders.yaml")
        child.expect_exact("batch 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    text = (dbt_repo / "rescues" / f"{TODAY}-int-orders.yaml").read_text()
    assert 'ticket: "DATA-1412"' in text and "max_models: 3" in text and "full_refresh" not in text
    assert main(["validate", f"rescues/{TODAY}-int-orders.yaml"]) == 0


def _doc_commands(doc: str) -> list[list[str]]:
    """The `rescue new ...` command lines of a Markdown page (backslash continuations joined)."""
    import shlex

    text = (REPO / "docs" / doc).read_text(encoding="utf-8").replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("rescue new ")]


@pytest.mark.parametrize("doc", ["scenarios.md", "getting-started.md"])
def test_documented_rescue_new_commands_write_valid_requests(
        dbt_repo: Path, capsys: pytest.CaptureFixture[str], doc: str) -> None:
    assert run(capsys, "init", "--timezone", "Europe/Berlin")[0] == 0
    commands = [c for c in _doc_commands(doc) if "--yes" in c]
    assert len(commands) >= 2
    for args in commands:
        code, out, err = run(capsys, *args)
        assert code == 0, (args, out, err)
    assert run(capsys, "validate")[0] == 0
