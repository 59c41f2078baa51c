"""docs/request-reference.md and docs/configuration.md are generated from the JSON Schemas and
must be current; the documented request example is itself a valid request."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_request_docs.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_request_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_request_reference_is_current() -> None:
    gen = _generator()
    assert gen.REQUEST_OUT.read_text(encoding="utf-8") == gen.render_request(), \
        "docs/request-reference.md is stale: run `python scripts/gen_request_docs.py`"


def test_configuration_reference_is_current() -> None:
    gen = _generator()
    assert gen.CONFIG_OUT.read_text(encoding="utf-8") == gen.render_config(), \
        "docs/configuration.md is stale: run `python scripts/gen_request_docs.py`"


def test_every_schema_field_is_documented() -> None:
    gen = _generator()
    text = gen.REQUEST_OUT.read_text(encoding="utf-8")
    for field in ("`reason`", "`window.daily.start`", "`batches.max_models`", "`overrides[].approved_by`"):
        assert f"| {field} |" in text, field
    config = gen.CONFIG_OUT.read_text(encoding="utf-8")
    for field in ("`notifications.webhook_url_env`", "`policy.quiet_windows.allow[].timezone`",
                  "`audit.branch`", "`prefect.work_queue`"):
        assert f"| {field} |" in config, field


def test_documented_example_is_a_valid_request(tmp_path: Path) -> None:
    from rescue_runner.request import load_request

    text = SCRIPT.parents[1].joinpath("docs", "request-reference.md").read_text(encoding="utf-8")
    example = text.split("## Example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "2026-03-01-orders.yaml"
    path.write_text(example, encoding="utf-8")
    request, findings = load_request(path)
    assert request is not None and not [f for f in findings if f.blocking], findings
