"""Policy rules, table-driven: every case is a YAML file under tests/data/rules/<CODE>/.

A case file holds (see tests/data/rules/README.md):

* ``now``: the injected clock (ISO date-time with offset);
* ``policy``: the ``policy:`` section of rescue.yaml (checked against the config schema);
* ``mapping``: the ``prefect.mapping:`` section of rescue.yaml (the target deployment; absent:
  rescue-runner's own flow);
* ``graph``: per-model facts merged over a copy of the example project's graph (LAKEHOUSE);
* ``history``: seconds per model merged over the default history (every model 5 s; null removes);
* ``selected``: the resolved selection (model names);
* ``excluded``: the models the request's ``exclude`` removed (model names);
* ``file``: the request's path (its id is the file name), default rescues/case.yaml;
* ``request``: the request file's text, decoded by the real loader, schema and builder;
* ``expect``: the complete list of policy findings: code, severity and optionally line,
  message (a substring) and overridden_by. The stale-downstream warning (RR218, advisory)
  fires on almost every partial selection of the example graph, so outside its own folder
  it is compared only when a case expects it.

File names say what a case is for: ``pass-*`` must not give an error with the rule's code,
``block-*`` must (and keeps blocking), ``warn-*`` gives it as a warning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rescue_runner.deployment_mapping import ParameterMapping, capabilities
from rescue_runner.loader import load_text
from rescue_runner.model import Finding, NodeInfo, ProjectGraph, RawDocument, Request
from rescue_runner.policies import (
    RULES,
    PolicyContext,
    PolicyFinding,
    applied_overrides,
    evaluate,
    policy_from_config,
)
from rescue_runner.request import build_request
from rescue_runner.schema import validate_against_schema

CASES = Path(__file__).resolve().parents[1] / "data" / "rules"
PROJECT = "lakehouse"

# The bundled example project's models (examples/lakehouse/README.md): name -> facts.
LAKEHOUSE: dict[str, dict[str, Any]] = {
    "stg_customers": {"materialized": "view"},
    "stg_orders": {"materialized": "view"},
    "stg_payments": {"materialized": "view"},
    "stg_events": {"materialized": "view", "event_time": "event_at"},
    "int_orders": {"materialized": "table", "parents": ["stg_orders", "stg_payments"]},
    "int_events_daily": {"materialized": "incremental", "incremental_strategy": "microbatch",
                         "event_time": "event_at", "begin": "2026-01-01", "batch_size": "month",
                         "parents": ["stg_events"]},
    "int_customer_orders": {"materialized": "table", "parents": ["stg_customers", "int_orders"]},
    "mart_revenue": {"materialized": "incremental", "incremental_strategy": "delete+insert",
                     "meta": {"owner": "finance", "rescue": {"heavy": True}}, "parents": ["int_orders"]},
    "mart_payment_methods": {"materialized": "table", "parents": ["stg_payments", "int_orders"]},
    "mart_events_monthly": {"materialized": "table", "parents": ["int_events_daily"]},
    "mart_customer_ltv": {"materialized": "incremental", "incremental_strategy": "delete+insert",
                          "full_refresh": False, "meta": {"owner": "crm", "rescue": {"heavy": False}},
                          "parents": ["int_customer_orders"]},
    "mart_finance_summary": {"materialized": "table", "parents": ["mart_revenue", "int_orders"]},
    "mart_customer_engagement": {"materialized": "table",
                                 "parents": ["int_customer_orders", "int_events_daily"]},
    "mart_customers": {"materialized": "table",
                       "parents": ["stg_customers", "int_customer_orders", "mart_customer_ltv"]},
}


def uid(name: str) -> str:
    return f"model.{PROJECT}.{name}"


def build_graph(overrides: dict[str, Any]) -> ProjectGraph:
    facts = {name: dict(f) for name, f in LAKEHOUSE.items()}
    for name, extra in (overrides or {}).items():
        facts.setdefault(name, {}).update(extra or {})
    nodes, parents = {}, {}
    for name, f in facts.items():
        nodes[uid(name)] = NodeInfo(
            unique_id=uid(name), name=name, resource_type=f.get("resource_type", "model"),
            materialized=f.get("materialized"),
            full_refresh=f.get("full_refresh"), incremental_strategy=f.get("incremental_strategy"),
            event_time=f.get("event_time"), begin=f.get("begin"), batch_size=f.get("batch_size"),
            meta=f.get("meta") or {})
        parents[uid(name)] = tuple(uid(p) for p in f.get("parents", ()))
    return ProjectGraph(nodes, parents, "sha256:test")


def load_case(path: Path) -> dict[str, Any]:
    doc, findings = load_text(path.read_bytes(), path.name)
    assert doc is not None, findings
    data: dict[str, Any] = doc.data
    unknown = set(data) - {"description", "now", "policy", "graph", "history", "selected", "excluded", "file",
                           "request", "expect", "mapping"}
    assert not unknown, f"{path.name}: unknown case keys {unknown}"
    return data


def build_case_request(case: dict[str, Any]) -> Request:
    doc, findings = load_text(case["request"], case.get("file", "rescues/case.yaml"))
    assert doc is not None, findings
    schema = validate_against_schema(doc)
    assert not schema, schema
    req, findings = build_request(doc)
    assert req is not None and not findings, findings
    return req


def context(case: dict[str, Any]) -> PolicyContext:
    policy_data = case.get("policy") or {}
    mapping = case.get("mapping")
    config_data = {"policy": policy_data, **({"prefect": {"mapping": mapping}} if mapping else {})}
    problems = validate_against_schema(RawDocument("rescue.yaml", config_data, {}, ""),
                                       "rescue-config.v1.json")
    assert not problems, problems
    graph = build_graph(case.get("graph") or {})
    history = {uid(n): 5.0 for n in LAKEHOUSE}
    for name, secs in (case.get("history") or {}).items():
        if secs is None:
            history.pop(uid(name), None)
        else:
            history[uid(name)] = float(secs)
    selected = frozenset(uid(n) for n in case.get("selected") or ())
    excluded = frozenset(uid(n) for n in case.get("excluded") or ())
    assert selected | excluded <= set(graph.nodes), "selected and excluded names must be models of the graph"
    return PolicyContext(request=build_case_request(case), models=selected, graph=graph,
                         policy=policy_from_config(policy_data), now=datetime.fromisoformat(case["now"]),
                         seconds=history, excluded=excluded,
                         deployment=capabilities(ParameterMapping.from_data(mapping) if mapping else None))


# Advisory and lineage-wide: compared in its own folder and where a case expects it.
INCIDENTAL = "RR218"


def case_findings(case: dict[str, Any], code: str) -> list[Finding]:
    findings = evaluate(context(case))
    if code != INCIDENTAL and not any(e["code"] == INCIDENTAL for e in case["expect"] or ()):
        findings = [f for f in findings if f.code != INCIDENTAL]
    return findings


ALL = sorted(CASES.glob("RR*/*.yaml"))


@pytest.mark.parametrize("path", ALL, ids=[f"{p.parent.name}/{p.stem}" for p in ALL])
def test_rule_case(path: Path) -> None:
    case = load_case(path)
    code = path.parent.name
    findings = case_findings(case, code)
    got = Counter((f.code, f.severity.value) for f in findings)
    want = Counter((e["code"], e["severity"]) for e in case["expect"] or ())
    shown = "\n".join(f"  {f.code} {f.severity.value} line {f.line}: {f.message}" for f in findings)
    assert got == want, f"{path.name}: findings differ:\n{shown}"
    for e in case["expect"] or ():
        matching = [f for f in findings if f.code == e["code"] and f.severity.value == e["severity"]]
        if "line" in e:
            assert e["line"] in [f.line for f in matching], f"{e['code']} not at line {e['line']}:\n{shown}"
        if "message" in e:
            assert any(e["message"] in f.message for f in matching), f"no '{e['message']}' in:\n{shown}"
        if "overridden_by" in e:
            assert any(isinstance(f, PolicyFinding) and f.override is not None
                       and f.override.approved_by == e["overridden_by"] for f in matching), shown
    mine = [f for f in findings if f.code == code]
    if path.stem.startswith("pass-"):
        assert not any(f.blocking for f in mine), f"{path.name} must pass {code}:\n{shown}"
    elif path.stem.startswith("block-"):
        assert any(f.blocking for f in mine), f"{path.name} must keep blocking on {code}:\n{shown}"
    elif path.stem.startswith("warn-"):
        assert mine and not any(f.blocking for f in mine), f"{path.name} must warn with {code}:\n{shown}"
    else:
        pytest.fail(f"{path.name}: name a case pass-*, block-* or warn-*")
    for f in findings:
        assert f.path == case.get("file", "rescues/case.yaml") and f.line, f"{f.code} has no location"


@pytest.mark.parametrize("code", [c for c, r in RULES.items() if r.scope == "request"])
def test_every_rule_has_passing_and_blocking_cases(code: str) -> None:
    stems = [p.stem for p in (CASES / code).glob("*.yaml")]
    assert any(s.startswith("pass-") for s in stems), f"{code}: add a pass-*.yaml case"
    assert any(s.startswith("block-") for s in stems), f"{code}: add a block-*.yaml case"


def test_overrides_are_part_of_the_result() -> None:
    case = load_case(CASES / "RR301" / "warn-overridden-by-approver.yaml")
    findings = evaluate(context(case))
    [f] = applied_overrides(findings)
    assert f.code == "RR301" and not f.blocking and f.level == "soft"
    assert f.to_dict()["override"] == {"code": "RR301", "approved_by": "@data-platform-lead",
                                       "reason": "Month-end close cannot wait for the night window."}


def test_hard_ignores_overrides_and_advisory_never_blocks() -> None:
    case = load_case(CASES / "RR301" / "warn-overridden-by-approver.yaml")
    ctx = context(case)
    levels = dict(ctx.policy.enforcement)
    hard = replace(ctx, policy=replace(ctx.policy, enforcement={**levels, "RR301": "hard"}))
    assert [(f.code, f.severity.value) for f in evaluate(hard) if f.code == "RR301"] == [("RR301", "error")]
    adv = replace(ctx, policy=replace(ctx.policy, enforcement={**levels, "RR301": "advisory"}))
    [f] = [f for f in evaluate(adv) if f.code == "RR301"]
    assert not f.blocking and isinstance(f, PolicyFinding) and f.override is None


def test_rules_never_read_the_clock() -> None:
    """Same context, same findings: a case a year later in wall time still gives its expectation
    because only ``ctx.now`` is consulted."""
    case = load_case(CASES / "RR103" / "block-expired.yaml")
    ctx = context(case)
    assert [f.code for f in evaluate(ctx)] == [f.code for f in evaluate(ctx)] == ["RR103", INCIDENTAL]
