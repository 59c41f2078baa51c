"""policy: decoding the policy section, defaults, levels, the stable hash, the rule registry."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path

import pytest

from rescue_runner.config import parse_config_text
from rescue_runner.policies import RULES, default_policy, policy_from_config, policy_hash
from rescue_runner.policy import LEVELS, Policy, PolicyError
from rescue_runner.windows import DailySpec

STRICT = {
    "owners": ["@data-platform"],
    "approvers": ["@data-platform-lead"],
    "heavy": {"min_minutes": 20, "meta_key": "rescue.heavy", "materializations": ["incremental"]},
    "quiet_windows": {
        "allow": [{"name": "nightly", "timezone": "Europe/Berlin", "start": "22:00", "end": "06:00"}],
        "deny": [{"timezone": "UTC", "start": "23:00", "end": "01:00", "weekdays": ["fri"]}],
    },
    "limits": {"max_models_per_request": 50, "max_models_per_batch": 10, "max_batch_minutes": 60},
    "request": {"ticket_required": True, "reason_min_length": 30},
    "expiry": {"required": True, "max_days": 14, "max_age_days": 30},
    "enforcement": {"RR213": "hard", "RR212": "soft"},
}


def test_defaults() -> None:
    p = default_policy()
    assert p.heavy.min_minutes == 30 and p.heavy.meta_key is None
    assert p.limits.max_models_per_request == 100 and p.limits.max_models_per_batch is None
    assert not p.request.ticket_required and p.request.reason_min_length == 10
    assert p.quiet.unrestricted and p.approvers == () and p.owners == ()
    assert set(p.enforcement) == set(RULES)
    assert all(p.level(c) == r.level for c, r in RULES.items())


def test_strict_policy_decodes() -> None:
    p = policy_from_config(STRICT)
    assert p.level("RR213") == "hard" and p.level("RR212") == "soft" and p.level("RR301") == "soft"
    assert p.quiet.allow == (DailySpec(time(22), time(6), "Europe/Berlin", None, "nightly"),)
    assert p.quiet.deny[0].weekdays == frozenset({4})
    assert p.is_approver("data-platform-lead") and p.is_approver("@Data-Platform-Lead")
    assert not p.is_approver("@jane")
    assert p.heavy.materializations == ("incremental",)


def test_hash_is_stable_and_semantic() -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", policy_hash(default_policy()))
    # key order, explicit defaults and the absent section all mean the same policy
    assert policy_hash(policy_from_config({})) == policy_hash(policy_from_config(None))
    explicit = {"limits": {"max_models_per_request": 100}, "enforcement": {"RR301": "soft"}}
    assert policy_hash(policy_from_config(explicit)) == policy_hash(default_policy())
    reordered = dict(reversed(list(STRICT.items())))
    assert policy_hash(policy_from_config(reordered)) == policy_hash(policy_from_config(STRICT))
    weaker = {**STRICT, "request": {"ticket_required": False, "reason_min_length": 30}}
    assert policy_hash(policy_from_config(weaker)) != policy_hash(policy_from_config(STRICT))
    # levels are hashed resolved: the bare value and the decoded empty section are one policy
    assert policy_hash(Policy()) == policy_hash(default_policy())


@pytest.mark.parametrize(("data", "where", "message"), [
    ({"quiet_windows": {"allow": [{"timezone": "Europe/Berln", "start": "22:00", "end": "06:00"}]}},
     ("policy", "quiet_windows", "allow", 0, "timezone"), "unknown time zone 'Europe/Berln'"),
    ({"quiet_windows": {"deny": [{"timezone": "localtime", "start": "22:00", "end": "06:00"}]}},
     ("policy", "quiet_windows", "deny", 0, "timezone"), "unknown time zone"),
    ({"enforcement": {"RR999": "hard"}}, ("policy", "enforcement", "RR999"), "unknown rule code"),
    ({"enforcement": {"RR301": "blocking"}}, ("policy", "enforcement", "RR301"), "level must be one of"),
    ({"limits": {"max_models": 3}}, ("policy", "limits", "max_models"), "unknown key"),
    ({"limits": {"max_models_per_request": 0}}, ("policy", "limits", "max_models_per_request"), "at least 1"),
    ({"quiet_windows": {"allow": [{"timezone": "UTC", "start": 1320, "end": "06:00"}]}},
     ("policy", "quiet_windows", "allow", 0, "start"), "must be str"),
    ({"quiet_windows": {"allow": [{"timezone": "UTC", "start": "24:00", "end": "06:00"}]}},
     ("policy", "quiet_windows", "allow", 0, "start"), "HH:MM"),
    ({"request": {"ticket_required": "yes"}}, ("policy", "request", "ticket_required"), "must be bool"),
])
def test_invalid_policies_name_the_key(data: dict, where: tuple, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_config(data)
    assert info.value.where == where
    assert message in info.value.message


def test_config_file_reports_policy_errors_at_their_line(tmp_path: Path) -> None:
    text = "version: 1\npolicy:\n  quiet_windows:\n    allow:\n      - timezone: Mars/Olympus\n" \
           "        start: \"22:00\"\n        end: \"06:00\"\n"
    cfg, findings = parse_config_text(text, tmp_path, "rescue.yaml")
    assert cfg is None
    assert [(f.code, f.line) for f in findings] == [("RR010", 5)]
    assert "unknown time zone 'Mars/Olympus'" in findings[0].message


def test_schema_refuses_what_the_loader_would_misread(tmp_path: Path) -> None:
    text = "version: 1\npolicy:\n  enforcment: {RR301: hard}\n  limits: {max_models_per_request: '5'}\n"
    cfg, findings = parse_config_text(text, tmp_path, "rescue.yaml")
    assert cfg is None
    assert [(f.code, f.line) for f in findings] == [("RR010", 3), ("RR010", 4)]
    assert "did you mean 'enforcement'" in findings[0].message


def test_registry_is_consistent() -> None:
    for code, rule in RULES.items():
        assert rule.code == code
        assert re.fullmatch(r"RR[123]\d\d", code)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name)
        assert rule.level in LEVELS
        assert rule.summary.endswith(".")
        assert "Bad" in rule.doc and "Good" in rule.doc and "```yaml" in rule.doc
    assert len({r.name for r in RULES.values()}) == len(RULES)
    assert list(RULES) == sorted(RULES)


def test_policy_path_imports_no_dbt_prefect_or_git() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from rescue_runner.model import NodeInfo, ProjectGraph, Request\n"
        "from rescue_runner.policies import PolicyContext, evaluate\n"
        "from rescue_runner.policies import default_policy\n"
        "n = NodeInfo('model.p.a', 'a', 'model', materialized='incremental')\n"
        "g = ProjectGraph({n.unique_id: n}, {n.unique_id: ()}, 'x')\n"
        "r = Request(id='r', path='r.yaml', version=1, reason='a long enough reason', requested_by='x',\n"
        "            select=('a',), full_refresh=True)\n"
        "now = datetime(2026, 1, 1, tzinfo=UTC)\n"
        "evaluate(PolicyContext(r, frozenset(g.nodes), g, default_policy(), now))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dbt', 'prefect', 'git', 'click'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
