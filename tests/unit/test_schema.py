"""The request format v1 JSON Schema and its findings with lines and helpful messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from rescue_runner.loader import load_text
from rescue_runner.model import RawDocument
from rescue_runner.schema import REQUEST_SCHEMA, load_schema, validate_against_schema

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "src" / "rescue_runner" / "schema_data" / REQUEST_SCHEMA
COPY = ROOT / "schema" / REQUEST_SCHEMA

HEAD = 'version: 1\nreason: Rebuild the order marts after the outage.\nrequested_by: "@jane"\n'


def check(text: str) -> list[tuple[str, int | None, str]]:
    doc, findings = load_text(text, "r.yaml")
    assert doc is not None, findings
    return [(f.code, f.line, f.message) for f in validate_against_schema(doc)]


def test_the_schema_copy_is_byte_identical_to_the_package_data() -> None:
    assert COPY.read_bytes() == PACKAGED.read_bytes()


def test_the_schema_is_valid_draft_2020_12_and_documented() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://rescue-runner.dev/schema/rescue-request.v1.json"
    assert "yaml-language-server: $schema=" in schema["$comment"]
    assert schema == json.loads(PACKAGED.read_text(encoding="utf-8"))

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                assert node.get("additionalProperties") is False, where
            for name, sub in node.get("properties", {}).items():
                assert sub.get("description"), f"{where}.{name} has no description"
                assert sub.get("examples"), f"{where}.{name} has no examples"
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(schema, "$")


def test_the_schema_examples_are_valid() -> None:
    schema = load_schema()
    validator = Draft202012Validator(schema)
    for example in schema["examples"]:
        assert list(validator.iter_errors(example)) == []


def test_valid_request_has_no_findings() -> None:
    assert check(HEAD + "select: orders\n") == []


def test_unknown_key_names_it_suggests_and_lists_allowed_keys() -> None:
    found = check(HEAD + "selct: orders\n")
    assert len(found) == 1  # the "missing select" finding is folded into the suggestion
    code, line, message = found[0]
    assert (code, line) == ("RR010", 4)
    assert "unknown key 'selct'" in message and "did you mean 'select'?" in message
    assert "allowed keys: batches, event_time, exclude" in message


def test_several_unknown_keys_give_one_finding_each_at_their_lines() -> None:
    found = check(
        HEAD + "select: a\ntarget: prod\nwindow:\n  not_before: 2026-03-01T00:00:00Z\n  zone: UTC\n"
    )
    assert [(c, line) for c, line, _ in found] == [("RR010", 5), ("RR010", 8)]
    assert "'window'" in found[1][2]


@pytest.mark.parametrize("value", ["no", "NO", "off", "y", "yes", '"true"'])
def test_boolean_written_as_text(value: str) -> None:
    [(code, line, message)] = check(HEAD + f"select: a\nfull_refresh: {value}\n")
    assert (code, line) == ("RR010", 5)
    assert message.startswith("full_refresh: '") and "is a string; write true or false" in message


@pytest.mark.parametrize(
    ("extra", "line", "fragment"),
    [
        ("window:\n  not_before: 2026-03-01T22:00:00\n", 6, "timezone offset"),
        ("window:\n  timezone: UTC\n  daily: {start: '7:00', end: '06:00'}\n", 7, "24-hour time HH:MM"),
        ("window:\n  timezone: UTC\n", 5, "give at least one of not_before, not_after, daily"),
        ("window:\n  daily: {start: 22:00, end: 06:00}\n", 6, "'daily' needs 'timezone'"),
        ("priority: '3'\n", 5, "write the number without quotes"),
        ("ticket: 42\n", 5, "write it in quotes"),
        ("batches: {}\n", 5, "must not be empty"),
        ("batches:\n  max_minutes: 0\n", 6, "must be more than 0"),
        ("event_time: {start: 2026-02-01}\n", 5, "missing required key 'end'"),
        ("overrides:\n  - {code: RR1, approved_by: me, reason: ok}\n", 6, "'RR' and three digits"),
        ("exclude: 'a; b'\n", 5, "dbt selectors"),
    ],
)
def test_messages(extra: str, line: int, fragment: str) -> None:
    found = check(HEAD + "select: a\n" + extra)
    assert any(found_line == line and fragment in message for _, found_line, message in found), found


def test_missing_required_keys_point_at_line_1() -> None:
    found = check("version: 1\n")
    assert [(c, line) for c, line, _ in found] == [("RR010", 1)] * 3
    assert any("missing required key 'reason'" in m for _, _, m in found)


def test_findings_are_sorted_and_values_are_clipped() -> None:
    found = check("requested_by: 5\nversion: 7\nreason: " + "x" * 5000 + "\nselect: '" + "a;" * 500 + "'\n")
    assert [line for _, line, _ in found] == sorted(line for _, line, _ in found)
    assert all(len(m) < 600 for _, _, m in found)


def test_findings_are_capped() -> None:
    found = check(HEAD + "select: a\n" + "".join(f"k{i}: 1\n" for i in range(80)))
    assert len(found) == 50
    assert "and 31 more schema problems" in found[-1][2]


def test_works_on_any_raw_document_and_rejects_unknown_schema_names() -> None:
    doc = RawDocument(path="x.yaml", data={"version": 1}, lines={}, content_hash="")
    assert {f.line for f in validate_against_schema(doc, REQUEST_SCHEMA)} == {1}
    with pytest.raises(ValueError):
        validate_against_schema(doc, "../pyproject.toml")
    with pytest.raises(FileNotFoundError):
        validate_against_schema(doc, "no-such-schema.v1.json")
