"""Hostile request files: every one is refused with a located finding, fast, without an exception.

The small cases are files in tests/data/hostile/ with their expectations in cases.json;
the large ones are generated into a temporary directory by tests/data/hostile/generate.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from rescue_runner.loader import load_document
from rescue_runner.model import Finding
from rescue_runner.request import load_request

HOSTILE = Path(__file__).resolve().parents[1] / "data" / "hostile"
CASES: dict[str, dict[str, object]] = json.loads((HOSTILE / "cases.json").read_text(encoding="utf-8"))
# CPU seconds, not wall time: the guard is against pathological work (an alias bomb runs for
# minutes), and CPU time does not grow when the machine is busy with other processes.
TIME_LIMIT = 2.0


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hostile_generate", HOSTILE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NamedTuple needs its module registered
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()


def _assert_located(findings: list[Finding], name: str) -> None:
    assert findings, f"{name}: expected at least one finding"
    assert any(f.blocking for f in findings), f"{name}: expected an error"
    for f in findings:
        assert re.fullmatch(r"RR\d{3}", f.code), f
        assert isinstance(f.line, int) and f.line >= 1, f
        assert f.path == name, f
        assert f.message and len(f.message) < 600, f


def _assert_expected(findings: list[Finding], name: str, code: object, line: object) -> None:
    got = [(f.code, f.line) for f in findings]
    if line is None:
        assert any(f.code == code for f in findings), f"{name}: expected {code}, got {got}"
    else:
        assert any(f.code == code and f.line == line for f in findings), (
            f"{name}: expected {code} line {line}, got {got}"
        )


def test_every_hostile_file_has_an_expectation() -> None:
    files = {p.name for p in HOSTILE.iterdir() if p.is_file() and p.name not in ("cases.json", "generate.py")}
    assert files == set(CASES)
    assert len(CASES) + len(GENERATE.CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_committed_hostile_case(name: str) -> None:
    expected = CASES[name]
    started = time.process_time()
    request, findings = load_request(HOSTILE / name, name)
    elapsed = time.process_time() - started
    assert elapsed < TIME_LIMIT, f"{name} took {elapsed:.2f} s"
    if "deferred" in expected:
        # Schema-valid on purpose: the selection stage or a policy must refuse it later.
        assert findings == [] and request is not None, findings
        return
    assert request is None
    _assert_located(findings, name)
    _assert_expected(findings, name, expected["code"], expected.get("line"))


@pytest.mark.parametrize("case", GENERATE.CASES, ids=lambda c: c.name)
def test_generated_hostile_case(case: GENERATE.Case, tmp_path: Path) -> None:  # type: ignore[name-defined]
    path = tmp_path / case.name
    path.write_bytes(case.build())
    started = time.process_time()
    if case.max_bytes is None:
        request, findings = load_request(path, case.name)
        assert request is None
    else:
        doc, findings = load_document(path, case.name, max_bytes=case.max_bytes)
        assert doc is None
    elapsed = time.process_time() - started
    assert elapsed < TIME_LIMIT, f"{case.name} took {elapsed:.2f} s"
    _assert_located(findings, case.name)
    _assert_expected(findings, case.name, case.code, case.line)
