"""docs/rules.md is generated from the rules' docstrings and must be up to date."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from rescue_runner.policies import RULES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_rule_docs.py"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_rule_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_rules_md_is_up_to_date() -> None:
    gen = _generator()
    assert gen.OUT.read_text(encoding="utf-8") == gen.render(), \
        "docs/rules.md is stale: run `python scripts/gen_rule_docs.py`"


def test_every_rule_is_documented() -> None:
    text = (SCRIPT.parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
    for code, rule in RULES.items():
        assert f"## {code} {rule.name}" in text


def test_policy_md_full_example_is_a_valid_policy() -> None:
    from rescue_runner.loader import load_text
    from rescue_runner.policies import policy_from_config
    from rescue_runner.schema import validate_against_schema

    text = (SCRIPT.parents[1] / "docs" / "policy.md").read_text(encoding="utf-8")
    example = text.split("## Full example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    doc, findings = load_text("version: 1\n" + example, "rescue.yaml")
    assert doc is not None, findings
    assert validate_against_schema(doc, "rescue-config.v1.json") == []
    policy = policy_from_config(doc.data["policy"])
    assert policy.level("RR213") == "hard" and len(policy.quiet.allow) == 2
