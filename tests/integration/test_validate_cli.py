"""`rescue validate` end to end: hostile files, output formats, exit codes, shipped examples."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import time
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rescue_runner.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HOSTILE = REPO / "tests" / "data" / "hostile"
CASES: dict[str, dict[str, object]] = json.loads((HOSTILE / "cases.json").read_text(encoding="utf-8"))


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("hostile_generate_cli", HOSTILE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()


@pytest.fixture(scope="module")
def repo(example_build, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """A repository root whose rescue.yaml points at the built example project."""
    root = tmp_path_factory.mktemp("repo")
    (root / "rescue.yaml").write_text(
        "version: 1\n"
        f"dbt:\n  project_dir: {example_build.project_dir.as_posix()}\n"
        f"  profiles_dir: {example_build.profiles_dir.as_posix()}\n", encoding="utf-8")
    (root / "rescues").mkdir()
    return root


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cwd: Path,
        *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _hostile_files(tmp: Path) -> list[Path]:
    files = [HOSTILE / n for n in sorted(CASES) if CASES[n].get("deferred") != "policy"]
    for case in GENERATE.CASES:
        if case.max_bytes is None:  # cases for the default size limit (the CLI's)
            p = tmp / case.name
            p.write_bytes(case.build())
            files.append(p)
    return files


def test_every_hostile_file_is_refused_through_the_cli(repo: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    files = _hostile_files(tmp_path)
    assert len(files) >= 25
    for path in files:
        started = time.perf_counter()
        code, out, err = run(capsys, monkeypatch, repo, "validate", "--format", "json", str(path))
        elapsed = time.perf_counter() - started
        assert code == 1, f"{path.name}: exit {code}\n{err}"
        assert "Traceback" not in out + err and "internal error" not in err, path.name
        assert elapsed < 2.0, f"{path.name} took {elapsed:.2f} s"
        doc = json.loads(out)
        findings = doc["requests"][0]["findings"]
        errors = [f for f in findings if f["severity"] == "error"]
        assert errors, path.name
        assert all(re.fullmatch(r"RR\d{3}", f["code"]) and f["line"] >= 1 for f in errors), path.name


def test_shipped_examples_validate(example_build, capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run(capsys, monkeypatch, REPO, "validate", "--format", "json",
                         "--project-dir", str(example_build.project_dir), "rescues/")
    assert code == 0, out + err
    doc = json.loads(out)
    assert doc["ok"] is True and len(doc["requests"]) >= 3
    hotfix = next(r for r in doc["requests"] if r["id"] == "2026-11-23-int-orders-hotfix")
    assert "model.lakehouse.int_orders" in hotfix["models"]
    assert "model.lakehouse.mart_revenue" in hotfix["models"]
    assert "model.lakehouse.stg_orders" not in hotfix["models"]


def _write(root: Path, name: str, body: str) -> Path:
    p = root / "rescues" / name
    p.write_text(body, encoding="utf-8")
    return p


GOOD = 'version: 1\nreason: "rebuild orders after the refund fix"\nrequested_by: ana\nselect: int_orders+\n'


def test_json_shape_and_models(repo: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(repo, "orders-fix.yaml", GOOD)
    code, out, _ = run(capsys, monkeypatch, repo, "validate", "--format", "json", str(p))
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"ok", "requests"}
    r = doc["requests"][0]
    assert {"path", "id", "ok", "findings", "models"} <= set(r)
    assert r["id"] == "orders-fix" and r["path"] == "rescues/orders-fix.yaml"
    assert r["models"] == sorted(r["models"]) and "model.lakehouse.mart_finance_summary" in r["models"]
    assert r["plan"]["id"] == "orders-fix" and r["plan"]["fingerprint"].startswith("sha256:")


def test_empty_selection_is_located_error(repo: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(repo, "typo.yaml", GOOD.replace("int_orders+", "\n  - int_ordrs+\n  - int_orders+"))
    code, out, _ = run(capsys, monkeypatch, repo, "validate", "--format", "json", str(p))
    assert code == 0  # one typo in a union: a warning, the rest still selects
    f = json.loads(out)["requests"][0]["findings"]
    assert [(x["code"], x["line"]) for x in f] == [("RR205", 5)]
    assert "Did you mean `int_orders+`?" in f[0]["message"]
    p = _write(repo, "nothing.yaml", GOOD.replace("int_orders+", "int_ordrs+"))
    code, out, _ = run(capsys, monkeypatch, repo, "validate", str(p))
    assert code == 1
    assert "rescues/nothing.yaml:4: error RR200" in out and "Did you mean `int_orders+`?" in out


def test_int_orders_alone_names_the_stale_marts(repo: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """RR218 on the bundled example: int_orders alone leaves the marts built from it stale."""
    p = _write(repo, "int-orders-alone.yaml", GOOD.replace("int_orders+", "int_orders"))
    code, out, _ = run(capsys, monkeypatch, repo, "validate", str(p))
    assert code == 0  # advisory by default: a warning
    assert "rescues/int-orders-alone.yaml:4: warning RR218 7 downstream tables will still hold data " \
           "built from the old int_orders" in out and "`select: int_orders+`" in out
    code, out, _ = run(capsys, monkeypatch, repo, "plan", "--format", "json", str(p))
    assert code == 0
    stale = json.loads(out)["stale_downstream"]["stale"]
    assert [m.rsplit(".", 1)[-1] for m in stale] == [
        "int_customer_orders", "mart_customer_engagement", "mart_customer_ltv", "mart_customers",
        "mart_finance_summary", "mart_payment_methods", "mart_revenue"]
    code, out, _ = run(capsys, monkeypatch, repo, "plan", str(p))
    assert "stale after this rescue: 7 downstream table(s) (built from the old int_orders): " \
           "int_customer_orders, mart_customer_engagement" in out
    code, out, _ = run(capsys, monkeypatch, repo, "validate", "--format", "markdown", str(p))
    assert "**Stale after this rescue:** 7 downstream table(s) not rebuilt, built from the old " \
           "`int_orders`" in out
    p = _write(repo, "int-orders-tree.yaml",
               GOOD.replace("int_orders+", "int_orders+\nexclude: mart_revenue+"))
    code, out, _ = run(capsys, monkeypatch, repo, "plan", str(p))
    assert code == 0 and "stale after" not in out
    assert "excluded on purpose (stay stale): mart_finance_summary, mart_revenue" in out


def test_unknown_method_and_unsafe_selectors(repo: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(repo, "bad-method.yaml", GOOD.replace("int_orders+", "colour:blue"))
    code, out, _ = run(capsys, monkeypatch, repo, "validate", str(p))
    assert code == 1 and "RR201" in out
    p = _write(repo, "escape.yaml", GOOD.replace("int_orders+", "path:../../etc"))
    code, out, _ = run(capsys, monkeypatch, repo, "validate", str(p))
    assert code == 1 and "rescues/escape.yaml:4: error RR204" in out


def test_github_annotations(repo: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(repo, "gh.yaml", GOOD + "full_refresh: no\n")
    code, out, _ = run(capsys, monkeypatch, repo, "validate", "--format", "github", str(p))
    assert code == 1
    assert re.search(r"^::error file=rescues/gh.yaml,line=5,title=RR010::", out, re.M), out


def test_markdown_comment_has_plan(repo: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(repo, "md.yaml", GOOD + "batches:\n  max_models: 3\n")
    code, out, _ = run(capsys, monkeypatch, repo, "validate", "--format", "markdown", str(p))
    assert code == 0
    assert out.startswith("<!-- rescue-runner:validate -->")
    assert out.count("```mermaid") == 2 and "gantt" in out and "| Batch |" in out


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ("version: 1\ndbt:\n  project_dir: nowhere\n", "no dbt_project.yml"),
        ("version: 1\ndbt:\n  manifest: missing/manifest.json\n", "manifest not found"),
        ("version: 1\ndbt:\n  project_dir: PROJECT\n  profiles_dir: .\n", "no profiles.yml"),
        ("version: 1\ndbt:\n  projectdir: x\n", "rescue.yaml:3"),
        ("version: 1\ndbt: [\n", "rescue.yaml"),
    ],
    ids=["no-project", "no-manifest", "no-profile", "unknown-key", "broken-yaml"],
)
def test_environment_problems_exit_2(example_build, tmp_path: Path, config: str, needle: str,  # type: ignore[no-untyped-def]
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rescue.yaml").write_text(config.replace("PROJECT", str(example_build.project_dir)),
                                          encoding="utf-8")
    (tmp_path / "rescues").mkdir()
    _write(tmp_path, "r.yaml", GOOD)
    code, out, err = run(capsys, monkeypatch, tmp_path, "validate")
    assert code == 2, out + err
    assert needle in err and "Traceback" not in err


def test_missing_path_is_usage_error(repo: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, monkeypatch, repo, "validate", "rescues/does-not-exist.yaml")
    assert code == 2 and "does-not-exist.yaml: no such file or folder" in err


def test_manifest_mode_matches_project_mode(repo: Path, example_build, tmp_path: Path,  # type: ignore[no-untyped-def]
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(repo, "both.yaml", GOOD)
    shutil.copy(example_build.manifest_path, tmp_path / "manifest.json")
    _, out1, _ = run(capsys, monkeypatch, repo, "validate", "--format", "json", str(p))
    _, out2, _ = run(capsys, monkeypatch, repo, "validate", "--format", "json",
                     "--manifest", str(tmp_path / "manifest.json"), str(p))
    assert json.loads(out1)["requests"][0]["models"] == json.loads(out2)["requests"][0]["models"]


def test_plan_shows_the_expected_start_of_each_batch(repo: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a Prefect server: the window and the pauses, in the request's zone and UTC."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    night = GOOD + "window:\n  daily: {start: '01:00', end: '05:00'}\n  timezone: Europe/Berlin\n" \
        "batches:\n  max_models: 2\n  pause_minutes: 5\n"
    p = _write(repo, "orders-night.yaml", night)
    code, out, _ = run(capsys, monkeypatch, repo, "plan", str(p))
    assert code == 0, out
    text = out.split("expected schedule (no Prefect server (PREFECT_API_URL unset): window and pauses "
                     "only):\n")[1]
    assert re.match(r"  batch 1: expected start .*\d\d:\d\d Europe/Berlin \(.*\d\d:\d\d UTC\), end ",
                    text), text
    code, out, _ = run(capsys, monkeypatch, repo, "plan", "--format", "json", str(p))
    schedule = json.loads(out)["schedule"]
    assert schedule["basis"].startswith("no Prefect server") and len(schedule["batches"]) >= 2
    starts = [datetime.fromisoformat(b["start"]) for b in schedule["batches"]]
    ends = [datetime.fromisoformat(b["end"]) for b in schedule["batches"]]
    berlin = ZoneInfo("Europe/Berlin")
    # Every batch starts inside the window.
    assert all(clock_time(1, 0) <= s.astimezone(berlin).time() < clock_time(5, 0) for s in starts)
    assert starts[1] >= ends[0] + timedelta(minutes=5)  # after batch 1 and the pause
