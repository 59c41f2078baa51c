"""The strict loader: byte checks, event scan, core-schema scalars, lines, hashes."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rescue_runner.loader import load_document, load_text


def codes(text: str | bytes, **kwargs: int) -> list[tuple[str, int | None]]:
    doc, findings = load_text(text, "r.yaml", **kwargs)
    assert doc is None or not findings
    return [(f.code, f.line) for f in findings]


def data(text: str | bytes) -> object:
    doc, findings = load_text(text, "r.yaml")
    assert findings == [] and doc is not None, findings
    return doc.data


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: true", True),
        ("a: True", True),
        ("a: TRUE", True),
        ("a: false", False),
        ("a: FALSE", False),
        ("a: no", "no"),
        ("a: NO", "NO"),
        ("a: off", "off"),
        ("a: y", "y"),
        ("a: yes", "yes"),
        ("a: null", None),
        ("a: ~", None),
        ("a:", None),
        ("a: Null", None),
        ("a: 'null'", "null"),
        ("a: 1", 1),
        ("a: -7", -7),
        ("a: +3", 3),
        ("a: 007", 7),
        ("a: '1'", "1"),
        ("a: 1.10", 1.1),
        ("a: 1e3", 1000.0),
        ("a: .5", 0.5),
        ("a: 1.", 1.0),
        ("a: 22:00", "22:00"),
        ("a: 0o17", "0o17"),
        ("a: 0x1F", "0x1F"),
        ("a: 1_000", "1_000"),
        ("a: .inf", ".inf"),
        ("a: .nan", ".nan"),
        ("a: 2026-03-01", "2026-03-01"),
        ("a: 2026-03-01T22:00:00", "2026-03-01T22:00:00"),
        ('a: "true"', "true"),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    assert data(text) == {"a": value}
    assert type(data(text)["a"]) is type(value)  # type: ignore[index]


def test_lines_of_keys_and_items() -> None:
    doc, findings = load_text(
        "# c\nversion: 1\nselect:\n  - a\n  - b\nwindow:\n  daily: {start: 22:00}\n", "r.yaml"
    )
    assert doc is not None and not findings
    assert doc.lines == {
        (): 1,
        ("version",): 2,
        ("select",): 3,
        ("select", 0): 4,
        ("select", 1): 5,
        ("window",): 6,
        ("window", "daily"): 7,
        ("window", "daily", "start"): 7,
    }
    assert doc.line_of(("window", "daily", "end")) == 7
    assert doc.path == "r.yaml"


def test_content_hash_is_of_the_raw_bytes_bom_included() -> None:
    raw = b"\xef\xbb\xbfa: 1\n"
    doc, _ = load_text(raw, "r.yaml")
    assert doc is not None and doc.data == {"a": 1}
    assert doc.content_hash == "sha256:" + hashlib.sha256(raw).hexdigest()
    same, _ = load_text("\ufeffa: 1\n", "r.yaml")
    assert same is not None and same.content_hash == doc.content_hash


def test_crlf_line_endings_are_fine() -> None:
    doc, _ = load_text(b"a: 1\r\nb:\r\n  - x\r\n", "r.yaml")
    assert doc is not None and doc.data == {"a": 1, "b": ["x"]} and doc.lines[("b", 0)] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &x 1\nb: *x\n", [("RR003", 1), ("RR003", 2)]),
        ("a: !!str 1\n", [("RR003", 1)]),
        ("a:\n  <<: {b: 1}\n", [("RR003", 2)]),
        ("a: 1\n---\nb: 2\n", [("RR003", 2)]),
        ("a: 1\nb: 2\na: 3\n", [("RR005", 3)]),
        ("a: [1\n", [("RR002", 2)]),
        ("a:\n\tb: 1\n", [("RR002", 2)]),
        ("- a\n", [("RR006", 1)]),
        ("1: a\n", [("RR006", 1)]),
        ("a: " + "[" * 11 + "]" * 11, [("RR004", 1)]),
    ],
)
def test_refused_constructs(text: str, expected: list[tuple[str, int]]) -> None:
    assert codes(text) == expected


def test_depth_limit_is_inclusive() -> None:
    nested = "a: " + "[" * 9 + "]" * 9  # the top mapping plus 9 lists: 10 levels
    assert data(nested) is not None
    assert codes("a: " + "[" * 10 + "]" * 10) == [("RR004", 1)]
    assert codes("a: " + "[" * 4 + "]" * 4, max_depth=4) == [("RR004", 1)]


def test_size_limit_counts_bytes_not_characters() -> None:
    text = "a: " + "é" * 40
    assert codes(text, max_bytes=80) == [("RR001", 1)]
    assert data(text)


def test_all_findings_say_error_and_carry_the_display_path() -> None:
    _, findings = load_text("a: &x 1\n", "rescues/x.yaml")
    assert [(f.path, f.severity.value) for f in findings] == [("rescues/x.yaml", "error")]
    assert "anchor '&x'" in findings[0].message


def test_load_document_reads_a_file_and_defaults_the_display_path(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    doc, findings = load_document(path)
    assert doc is not None and not findings and doc.path == path.as_posix()
    doc, _ = load_document(path, "rescues/r.yaml")
    assert doc is not None and doc.path == "rescues/r.yaml"


def test_a_huge_file_is_refused_from_its_size_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(2 * 1024**3)  # sparse: 2 GiB that take no disk space
    started = time.perf_counter()
    doc, findings = load_document(path, "huge.yaml")
    assert time.perf_counter() - started < 0.5
    assert doc is None and [(f.code, f.line) for f in findings] == [("RR001", 1)]
    assert "2147483648 bytes" in findings[0].message


def test_missing_file_directory_and_symlink_are_findings(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.yaml", tmp_path):
        doc, findings = load_document(path, "x.yaml")
        assert doc is None and [f.code for f in findings] == ["RR001"]
    target = tmp_path / "secret.txt"
    target.write_text("token: abc\n", encoding="utf-8")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    doc, findings = load_document(link, "link.yaml")
    assert doc is None and "symbolic link" in findings[0].message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    doc, findings = load_document(fifo, "fifo.yaml")
    assert doc is None and "not a regular file" in findings[0].message


def test_text_with_a_lone_surrogate_is_a_finding() -> None:
    assert codes("a: \ud800\n") == [("RR001", 1)]


YAMLISH = st.text(
    alphabet=list("{}[]:,-?&*!|>'\"#%@`\\ \t\n\r.~0123456789abnlyeTFx<\ufeff\u00e9"), max_size=200
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), YAMLISH))
def test_random_text_never_raises(text: str) -> None:
    doc, findings = load_text(text, "r.yaml")
    assert (doc is None) == bool(findings)
    for f in findings:
        assert f.code in {"RR001", "RR002", "RR003", "RR004", "RR005", "RR006"}
        assert isinstance(f.line, int) and f.line >= 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    doc, findings = load_text(raw, "r.yaml")
    assert (doc is None) == bool(findings)
    assert all(isinstance(f.line, int) and f.line >= 1 for f in findings)
