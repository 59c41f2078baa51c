"""Hostile inputs too large to commit, generated on demand.

``tests/unit/test_hostile.py`` writes them into a temporary directory. To look at them:
``python tests/data/hostile/generate.py OUTDIR``. The small hostile files live next to this
script; their expectations are in ``cases.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

HEAD = 'version: 1\nreason: Rebuild the order marts after the outage.\nrequested_by: "@mallory"\n'
LARGE = 10 * 1024 * 1024  # a max_bytes that lets the big inputs past the size check


class Case(NamedTuple):
    name: str
    build: Callable[[], bytes]
    code: str
    line: int | None
    max_bytes: int | None  # None: the loader's default limit
    why: str


def deep_flow_lists() -> bytes:
    return b"[" * 100_000 + b"]" * 100_000


def deep_flow_mappings() -> bytes:
    return b"{a: " * 100_000 + b"1" + b"}" * 100_000


def deep_block_mappings() -> bytes:
    return "".join("  " * i + "a:\n" for i in range(3_000)).encode()


def one_megabyte() -> bytes:
    return (HEAD + "select: orders\nticket: " + "x" * (1024 * 1024) + "\n").encode()


def long_line() -> bytes:
    return (HEAD.replace("Rebuild", "Rebuild " + "very " * 12_000) + "select: orders\n").encode()


def many_unknown_keys() -> bytes:
    return (HEAD + "select: orders\n" + "".join(f"k{i}: {i}\n" for i in range(5_000))).encode()


def wide_select() -> bytes:
    return (HEAD + "select: [" + ", ".join(["orders"] * 8_000) + "]\n").encode()


def many_anchors() -> bytes:
    return (HEAD + "select: orders\n" + "".join(f"k{i}: &a{i} x\n" for i in range(4_000))).encode()


def many_duplicates() -> bytes:
    return (HEAD + "select: orders\n" + "full_refresh: true\n" * 3_000).encode()


CASES: tuple[Case, ...] = (
    Case(
        "deep-100k-flow-lists.yaml",
        deep_flow_lists,
        "RR001",
        1,
        None,
        "100,000 nested [ : over the size limit",
    ),
    Case(
        "deep-100k-flow-lists-unlimited.yaml",
        deep_flow_lists,
        "RR004",
        1,
        LARGE,
        "100,000 nested [ past the size check: the depth scan must stop at level 11",
    ),
    Case(
        "deep-100k-flow-mappings.yaml",
        deep_flow_mappings,
        "RR001",
        1,
        None,
        "{a: {a: ... over the size limit",
    ),
    Case(
        "deep-100k-flow-mappings-unlimited.yaml",
        deep_flow_mappings,
        "RR004",
        1,
        LARGE,
        "{a: {a: ... 100,000 deep past the size check",
    ),
    Case(
        "deep-3k-block-mappings-unlimited.yaml",
        deep_block_mappings,
        "RR004",
        11,
        LARGE,
        "3,000 levels of block indentation",
    ),
    Case("one-megabyte.yaml", one_megabyte, "RR001", 1, None, "1 MiB file: refused from its size alone"),
    Case("long-line.yaml", long_line, "RR010", 2, None, "a 60,000-character line under the size limit"),
    Case("many-unknown-keys.yaml", many_unknown_keys, "RR010", 5, None, "5,000 unknown keys"),
    Case("wide-select.yaml", wide_select, "RR010", 4, None, "8,000 selectors in one flow list"),
    Case("many-anchors.yaml", many_anchors, "RR003", 5, None, "4,000 anchors: findings are capped"),
    Case("many-duplicates.yaml", many_duplicates, "RR005", 6, None, "3,000 copies of one key"),
)


def write_all(directory: Path) -> list[Path]:
    """Write every generated case into ``directory``; the written paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in CASES:
        path = directory / case.name
        path.write_bytes(case.build())
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python generate.py OUTDIR")
    for written in write_all(Path(sys.argv[1])):
        print(written)
