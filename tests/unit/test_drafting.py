"""`rescue new` and `rescue init` building blocks: answer checks, file names, YAML that reads back
exactly (whatever the reason says), and project detection."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rescue_runner import drafting, scaffold
from rescue_runner.loader import load_text
from rescue_runner.request import build_request
from rescue_runner.schema import validate_against_schema


def roundtrip(draft: drafting.Draft) -> dict[str, object]:
    text = drafting.render_request(draft, drafting.SCHEMA_ID)
    doc, findings = load_text(text, "rescues/2026-11-23-x.yaml")
    assert doc is not None, findings
    assert validate_against_schema(doc) == []
    request, findings = build_request(doc)
    assert request is not None, findings
    return dict(doc.data)


@pytest.mark.parametrize("reason", [
    "NO: yes, 22:00 and 1.10 stay strings", "quotes \" and ' and \\ backslash", "# not a comment: really",
    "Umlaute ÄÖÜ, emoji 🚑, CJK 漢字", "{flow: [style]} & *alias !tag %directive"])
def test_tricky_reasons_read_back_verbatim(reason: str) -> None:
    draft = drafting.Draft(select=("int_orders+",), reason=reason, requested_by="Ana <ana@example.com>")
    assert roundtrip(draft)["reason"] == reason


@given(st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Zl", "Zp")), min_size=10,
               max_size=300))
def test_any_checked_reason_reads_back(reason: str) -> None:
    try:
        checked = drafting.check_reason(reason)
    except ValueError:
        return
    draft = drafting.Draft(select=("a",), reason=checked, requested_by="x")
    assert roundtrip(draft)["reason"] == checked


def test_full_draft_renders_every_field() -> None:
    draft = drafting.Draft(select=("int_orders+", "tag:finance"), exclude=("mart_revenue",),
                           reason="a reason long enough", requested_by="ana", ticket="DATA-1",
                           full_refresh=True, max_models=5, window_daily=("01:00", "05:00"),
                           timezone="Europe/Berlin", expires="2026-12-31")
    data = roundtrip(draft)
    assert data["select"] == ["int_orders+", "tag:finance"] and data["exclude"] == "mart_revenue"
    assert data["window"] == {"daily": {"start": "01:00", "end": "05:00"}, "timezone": "Europe/Berlin"}
    assert data["batches"] == {"max_models": 5} and data["full_refresh"] is True
    text = drafting.render_request(draft, "../schema/rescue-request.v1.json")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../schema/rescue-request.v1.json"


@pytest.mark.parametrize(("value", "message"), [
    ("", "at least one dbt selector"), ("   ", "at least one dbt selector"),
    ("a;b", "not allowed"), ("--vars", "starts with '-'"), ("path:../secrets", "outside the dbt project"),
    ("{{ env_var('X') }}", "not allowed"), ("a\x1bb", "control characters")])
def test_bad_selections(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        drafting.check_selectors_text(value)


def test_selection_is_split_and_deduplicated() -> None:
    assert drafting.check_selectors_text("  int_orders+  tag:x int_orders+ ") == ("int_orders+", "tag:x")


def test_answer_checks() -> None:
    assert drafting.check_reason("  two   words and more ") == "two words and more"
    with pytest.raises(ValueError, match="at least 30"):
        drafting.check_reason("too short for this policy", 30)
    assert drafting.check_ticket("", required=False) is None
    with pytest.raises(ValueError, match="requires a ticket"):
        drafting.check_ticket(" ", required=True)
    with pytest.raises(ValueError, match="without spaces"):
        drafting.check_ticket("DATA 1")
    assert drafting.check_daily_window("22:00-06:00") == ("22:00", "06:00")
    for bad in ("22-06", "24:00-01:00", "1:00-5:00"):
        with pytest.raises(ValueError, match="not a daily window"):
            drafting.check_daily_window(bad)
    assert drafting.check_timezone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(ValueError, match="IANA"):
        drafting.check_timezone("CET+1")
    assert drafting.check_max_models("") is None and drafting.check_max_models(" 7 ") == 7
    with pytest.raises(ValueError, match="from 1 to 10000"):
        drafting.check_max_models("0")


def test_file_names(tmp_path: Path) -> None:
    assert drafting.slugify("int_orders+") == "int-orders"
    assert drafting.slugify("Ünïcode & stuff!!") == "unicode-stuff"
    assert drafting.slugify("+++") == "rescue"
    day = date(2026, 11, 23)
    first = drafting.request_path(tmp_path, day, "int-orders")
    assert first.name == "2026-11-23-int-orders.yaml"
    first.write_text("x")
    assert drafting.request_path(tmp_path, day, "int-orders").name == "2026-11-23-int-orders-2.yaml"
    long = drafting.request_path(tmp_path, day, "x" * 200)
    assert len(long.stem) <= 80


def test_schema_ref_is_the_repository_copy(tmp_path: Path) -> None:
    assert drafting.schema_ref(tmp_path / "rescues" / "a.yaml", tmp_path) == drafting.SCHEMA_ID
    assert drafting.schema_ref(tmp_path / "rescues" / "team" / "a.yaml", tmp_path) == \
        "../../schema/rescue-request.v1.json"


def test_project_detection(tmp_path: Path) -> None:
    for rel in ("transform", "transform/dbt_packages/dbt_utils", ".venv/lib/x", "other/target/y"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "dbt_project.yml").write_text("name: x\n")
    assert scaffold.detect_project(tmp_path) == (tmp_path / "transform").resolve()
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "dbt_project.yml").write_text("name: y\n")
    with pytest.raises(scaffold.RescueError, match="several dbt projects"):
        scaffold.detect_project(tmp_path)
    assert scaffold.detect_project(tmp_path, tmp_path / "second") == (tmp_path / "second").resolve()


def test_init_plan_is_a_valid_configuration(tmp_path: Path) -> None:
    from rescue_runner.config import parse_config_text
    from rescue_runner.policies import policy_from_config

    (tmp_path / "dbt").mkdir()
    files = scaffold.plan_init(tmp_path, tmp_path / "dbt", ci=(), timezone="America/New_York",
                               branch="release/prod", pip_spec="rescue-runner==9.9")
    assert set(files) == {"rescue.yaml", "rescues/README.md", "schema/rescue-request.v1.json",
                          "schema/rescue-config.v1.json"}
    cfg, findings = parse_config_text(files["rescue.yaml"], tmp_path, "rescue.yaml")
    assert cfg is not None, findings
    assert not findings
    assert cfg.dbt.project_dir == tmp_path / "dbt" and cfg.dbt.profiles_dir == tmp_path / "dbt"
    assert cfg.audit.protected_branch == "release/prod"
    window = policy_from_config(cfg.policy).to_dict()["quiet_windows"]["allow"][0]
    assert window["timezone"] == "America/New_York"
    with pytest.raises(scaffold.RescueError, match="unknown time zone"):
        scaffold.plan_init(tmp_path, tmp_path / "dbt", ci=(), timezone="Mars/Base", branch="main",
                           pip_spec="x")


def test_onboarding_modules_import_no_dbt_prefect_or_click() -> None:
    """`rescue init`, the answer checks and notify stay fast: no heavy import, no click in the library."""
    import subprocess
    import sys

    code = ("import sys, rescue_runner.notify, rescue_runner.drafting, rescue_runner.scaffold; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dbt', 'prefect', 'git', 'click'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
