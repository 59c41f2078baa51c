"""prefect.mapping: a batch's parameters in another deployment's shape, and what it cannot carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescue_runner.config import config_from_data, parse_config_text
from rescue_runner.deployment_mapping import (
    MappingError,
    ParameterMapping,
    capabilities,
    check_schema,
    map_parameters,
    request_findings,
    selection_of,
)
from rescue_runner.loader import load_text
from rescue_runner.request import build_request

ARTICLE = {"selection": "dbt_selects.run", "ref": "dbt_repo_branch", "repo_url": "dbt_repo_url",
           "token_secret": "dbt_repo_token_secret",
           "fixed": {"dbt_project_path": "transform", "run_results_storage_path": "s3://acme/run-results",
                     "run_results_storage_credentials_secret": "dbt-artifacts-s3"}}
OWN = {"dbt_selects": {"select": "path:models/a.sql,package:p path:models/b.sql,package:p"},
       "full_refresh": False, "event_time_start": None, "event_time_end": None}
ARTICLE_SCHEMA = {"properties": {name: {"type": t} for name, t in (
    ("dbt_selects", "object"), ("dbt_repo_url", "string"), ("dbt_repo_token_secret", "string"),
    ("dbt_repo_branch", "string"), ("dbt_project_path", "string"), ("run_results_storage_path", "string"),
    ("run_results_storage_credentials_secret", "string"))}}


def _request(text: str):  # type: ignore[no-untyped-def]
    doc, findings = load_text(text, "rescues/r.yaml")
    assert doc is not None, findings
    req, findings = build_request(doc)
    assert req is not None, findings
    return req


def test_article_template_gets_its_own_parameter_names() -> None:
    m = ParameterMapping.from_data(ARTICLE)
    repo = "https://git.example.com/acme/analytics.git"
    got = map_parameters(m, {**OWN, "dbt_repo_url": repo}, branch="main")
    assert got == {
        "dbt_selects": {"run": "path:models/a.sql,package:p path:models/b.sql,package:p"},
        "dbt_repo_branch": "main", "dbt_repo_url": repo,
        "dbt_project_path": "transform", "run_results_storage_path": "s3://acme/run-results",
        "run_results_storage_credentials_secret": "dbt-artifacts-s3"}
    assert selection_of(m, got) == OWN["dbt_selects"]["select"]
    assert check_schema(m, ARTICLE_SCHEMA) == []
    cap = capabilities(m)
    assert (cap.full_refresh, cap.event_time, cap.pinned, cap.ref_only) == (False, False, False, True)


def test_flags_in_the_selection_string_and_typed_parameters() -> None:
    flags = ParameterMapping.from_data({**ARTICLE, "full_refresh": "flag", "event_time": "flags"})
    params = {**OWN, "full_refresh": True, "event_time_start": "2026-10-01T00:00:00+00:00",
              "event_time_end": "2026-11-01T00:00:00+00:00"}
    assert map_parameters(flags, params, branch="main")["dbt_selects"]["run"] == (
        "path:models/a.sql,package:p path:models/b.sql,package:p --full-refresh "
        "--event-time-start 2026-10-01T00:00:00+00:00 --event-time-end 2026-11-01T00:00:00+00:00")
    typed = ParameterMapping.from_data({"selection": "models", "selection_format": "list",
                                        "full_refresh": "full_refresh", "commit": "sha",
                                        "event_time": {"start": "from_ts", "end": "to_ts"}})
    got = map_parameters(typed, {**params, "dbt_repo_commit": "a" * 40}, branch="main")
    assert got == {"models": ["path:models/a.sql,package:p", "path:models/b.sql,package:p"],
                   "full_refresh": True, "from_ts": params["event_time_start"],
                   "to_ts": params["event_time_end"], "sha": "a" * 40}
    assert capabilities(typed).pinned


def test_what_cannot_be_expressed_is_refused_never_dropped() -> None:
    m = ParameterMapping.from_data(ARTICLE)
    with pytest.raises(MappingError, match="full refresh"):
        map_parameters(m, {**OWN, "full_refresh": True}, branch="main")
    with pytest.raises(MappingError, match="event-time"):
        map_parameters(m, {**OWN, "event_time_start": "x", "event_time_end": "y"}, branch="main")
    listed = ParameterMapping.from_data({"selection": "models", "selection_format": "list",
                                         "full_refresh": "flag"})
    assert not capabilities(listed).full_refresh
    with pytest.raises(MappingError, match="inside a string"):
        map_parameters(listed, {**OWN, "full_refresh": True}, branch="main")


def test_request_findings_are_located() -> None:
    req = _request("version: 1\nreason: rebuild the orders mart fully\nrequested_by: ana\n"
                   "select: int_orders\nfull_refresh: true\n"
                   "event_time: {start: 2026-10-01, end: 2026-11-01}\n")
    found = request_findings(req, ParameterMapping.from_data(ARTICLE),
                             deployment="transform_and_catalog/dbt_rerun")
    assert [(f.code, f.severity.value, f.path, f.line) for f in found] == [
        ("RR020", "error", "rescues/r.yaml", 5), ("RR021", "error", "rescues/r.yaml", 6)]
    assert "transform_and_catalog/dbt_rerun cannot run a full refresh" in found[0].message
    assert request_findings(req, None, deployment="x") == []
    can = ParameterMapping.from_data({**ARTICLE, "full_refresh": "flag", "event_time": "flags"})
    assert request_findings(req, can, deployment="x") == []


def test_check_schema_names_what_does_not_fit() -> None:
    m = ParameterMapping.from_data({**ARTICLE, "full_refresh": "full_refresh", "commit": "dbt_repo_commit"})
    problems = check_schema(m, ARTICLE_SCHEMA)
    assert problems == ["prefect.mapping.commit: the deployment has no parameter 'dbt_repo_commit'",
                        "prefect.mapping.full_refresh: the deployment has no parameter 'full_refresh'"]
    flat = {"properties": {"dbt_selects": {"type": "string"}}}
    nested = ParameterMapping.from_data({"selection": "dbt_selects.run"})
    assert any("not an object" in p for p in check_schema(nested, flat))
    assert check_schema(None, ARTICLE_SCHEMA, ("dbt_selects", "full_refresh")) == [
        "the deployment has no parameter 'full_refresh' (rescue-runner's own flow sends it; "
        "run `rescue deploy`, or map the deployment's parameters in prefect.mapping)"]


def test_rescue_yaml_mapping_is_schema_checked(tmp_path: Path) -> None:
    cfg = config_from_data(tmp_path, {"prefect": {"mapping": ARTICLE}})
    assert cfg.prefect.mapping == ParameterMapping.from_data(ARTICLE)
    assert config_from_data(tmp_path, {}).prefect.mapping is None
    bad = "version: 1\nprefect:\n  mapping:\n    selection: dbt_selects.run\n    full_refresh: yes please\n"
    cfg2, findings = parse_config_text(bad, tmp_path, "rescue.yaml")
    assert cfg2 is None and [f.line for f in findings if f.blocking] == [5]
