"""The disk cache of loaded manifests and parses: a speed-up that is never trusted for more.

Entries round-trip; a corrupt, truncated, foreign or unsafe entry is a miss (and is replaced);
keys change with every input a parse depends on; nothing is read or written when it is off."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from rescue_runner.adapters import dbt_cache
from rescue_runner.adapters.dbt import _pure


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(dbt_cache.DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(dbt_cache.SWITCH_ENV, raising=False)
    return tmp_path / "cache"


def test_round_trip_and_miss() -> None:
    assert dbt_cache.load("parse", "k1") is None
    assert dbt_cache.store("parse", "k1", {"manifest": [1, 2, 3]})
    assert dbt_cache.load("parse", "k1") == {"manifest": [1, 2, 3]}
    assert dbt_cache.load("parse", "k2") is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "foreign", "format"])
def test_a_damaged_or_foreign_entry_is_ignored_and_removed(cache: Path, damage: str) -> None:
    dbt_cache.store("parse", "k1", {"v": 1})
    entry = cache / "parse" / "k1.pickle"
    data = entry.read_bytes()
    if damage == "flip":
        data = data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:]
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = pickle.dumps({"v": "not ours"})
    elif damage == "foreign":  # a valid entry stored under another key, renamed into place
        dbt_cache.store("parse", "other", {"v": 2})
        data = (cache / "parse" / "other.pickle").read_bytes()
    else:
        data = data.replace(b'"format": 1', b'"format": 99')
    entry.write_bytes(data)
    assert dbt_cache.load("parse", "k1") is None
    assert not entry.exists()
    assert dbt_cache.store("parse", "k1", {"v": 3}) and dbt_cache.load("parse", "k1") == {"v": 3}


def test_a_directory_others_can_write_is_not_read(cache: Path) -> None:
    dbt_cache.store("parse", "k1", {"v": 1})
    os.chmod(cache / "parse", 0o777)
    assert dbt_cache.load("parse", "k1") is None
    assert not dbt_cache.store("parse", "k2", {"v": 2})


def test_switched_off_nothing_is_read_or_written(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbt_cache.store("parse", "k1", {"v": 1})
    monkeypatch.setenv(dbt_cache.SWITCH_ENV, "off")
    assert dbt_cache.load("parse", "k1") is None
    assert not dbt_cache.store("parse", "k2", {"v": 2})
    assert not (cache / "parse" / "k2.pickle").exists()


def test_unpicklable_values_cost_speed_not_correctness(cache: Path) -> None:
    assert not dbt_cache.store("parse", "k1", {"v": lambda: 1})
    assert list((cache / "parse").iterdir()) == []  # no temp file left behind


def test_only_the_newest_entries_are_kept(cache: Path) -> None:
    for i in range(dbt_cache.KEEP + 3):
        dbt_cache.store("parse", f"k{i}", i)
        os.utime(cache / "parse" / f"k{i}.pickle", (1000 + i, 1000 + i))
    dbt_cache.store("parse", "last", 0)
    kept = {p.stem for p in (cache / "parse").iterdir()}
    assert len(kept) == dbt_cache.KEEP and "last" in kept and "k0" not in kept


def _project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    (root / "profiles.yml").write_text("p:\n  outputs:\n    dev:\n      path: \"{{ env_var('P_DB') }}\"\n")
    (root / "models" / "a.sql").write_text("select 1")
    return root


def test_parse_key_follows_every_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _project(tmp_path / "p")
    monkeypatch.setenv("P_DB", "one.duckdb")
    base = dbt_cache.parse_key(p, p, "dev")
    assert dbt_cache.parse_key(p, p, "dev") == base
    (p / "target").mkdir()
    (p / "target" / "manifest.json").write_text("{}")  # dbt's outputs are not inputs
    assert dbt_cache.parse_key(p, p, "dev") == base
    assert dbt_cache.parse_key(p, p, "prod") != base
    assert dbt_cache.parse_key(p, p, "dev", vars={"x": 1}) != base
    assert dbt_cache.parse_key(p, p, "dev", revision="a" * 40) != dbt_cache.parse_key(
        p, p, "dev", revision="b" * 40)
    monkeypatch.setenv("P_DB", "two.duckdb")  # the profile reads it: another warehouse
    assert dbt_cache.parse_key(p, p, "dev") != base
    monkeypatch.setenv("P_DB", "one.duckdb")
    (p / "models" / "a.sql").write_text("select 2")
    changed = dbt_cache.parse_key(p, p, "dev")
    assert changed != base
    (p / "models" / "b.sql").write_text("select 3")
    assert dbt_cache.parse_key(p, p, "dev") != changed


class Manifest:  # what cached_parse reads of a dbt Manifest: the env vars the parse used
    def __init__(self) -> None:
        self.env_vars = {"MODEL_VAR": "x"}


def test_cached_parse_parses_once_per_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _project(tmp_path / "p")
    calls: list[int] = []

    def parse() -> Manifest:
        calls.append(1)
        return Manifest()

    monkeypatch.setenv("MODEL_VAR", "x")
    assert dbt_cache.cached_parse(p, None, "dev", parse)[1] == "parsed"
    assert dbt_cache.cached_parse(p, None, "dev", parse)[1] == "cache"
    assert len(calls) == 1
    monkeypatch.setenv("MODEL_VAR", "y")  # a model read it at parse time: the parse is stale
    assert dbt_cache.cached_parse(p, None, "dev", parse)[1] == "parsed"
    (p / "models" / "a.sql").write_text("select 2")
    assert dbt_cache.cached_parse(p, None, "dev", parse)[1] == "parsed"
    assert len(calls) == 3


@pytest.mark.parametrize(("selector", "pure"), [
    ("int_orders", True), ("+int_orders+", True), ("@mart", True), ("2+a+3", True),
    ("tag:nightly,config.materialized:incremental", True), ("package:lakehouse", True),
    ("path:models/staging", False), ("models/staging", False), ("a.sql", False),
    ("state:modified+", False), ("result:error", False), ("source_status:fresher+", False),
    ("file:a.sql", False), ("tag:x,path:models", False),
])
def test_selections_remembered_only_when_the_manifest_alone_decides(selector: str, pure: bool) -> None:
    assert _pure(selector) is pure
