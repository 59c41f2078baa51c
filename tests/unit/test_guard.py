"""Post-merge guard (guard.py, pure): what changed against production, and what no request covers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rescue_runner.graph import MANIFEST_CONFIG_KEYS
from rescue_runner.guard import (
    DATA_CONFIG_KEYS,
    Change,
    Coverage,
    StaleModel,
    by_commit,
    changed_models,
    stale_lines,
    uncovered,
)


def node(name: str, checksum: str, rtype: str = "model", **config: Any) -> dict[str, Any]:
    return {"name": name, "resource_type": rtype, "original_file_path": f"models/{name}.sql",
            "checksum": {"name": "sha256", "checksum": checksum},
            "config": {"materialized": "table", **config}}


def manifest(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {f"{n['resource_type']}.p.{n['name']}": n for n in nodes}}


def test_code_config_and_new_models_are_changes_tags_are_not() -> None:
    prod = manifest(node("a", "1"), node("b", "2"), node("c", "3"), node("d", "4"),
                    node("t", "5", rtype="test"))
    branch = manifest(node("a", "1"), node("b", "22"), node("c", "3", materialized="incremental"),
                      node("d", "4", tags=["x"], meta={"owner": "y"}), node("e", "5"),
                      node("f", "6", enabled=False), node("t", "55", rtype="test"))
    got = {(c.name, c.what) for c in changed_models(branch, prod)}
    assert got == {("b", "code"), ("c", "config"), ("e", "new")}
    [c] = [c for c in changed_models(branch, prod) if c.name == "c"]
    assert c.paths == ("models/c.sql", "dbt_project.yml")  # config may come from the project file


def test_a_request_added_at_or_after_the_change_covers_it_while_pending_or_succeeded() -> None:
    ch = Change("model.p.b", "b", "code")
    history = {("c1", "c1"), ("c1", "c2"), ("c1", "c3")}  # c2 and c3 descend from c1

    def descends(a: str, c: str) -> bool:
        return (a, c) in history

    assert uncovered([(ch, "c1")], [], descends) == [(ch, "c1")]
    before = Coverage("old", frozenset({"model.p.b"}), "c0", True)  # older than the change
    other = Coverage("x", frozenset({"model.p.z"}), "c2", True)  # does not select it
    failed = Coverage("f", frozenset({"model.p.b"}), "c2", False)  # failed: covers nothing
    assert uncovered([(ch, "c1")], [before, other, failed], descends) == [(ch, "c1")]
    good = Coverage("ok", frozenset({"model.p.b"}), "c3", True)
    assert uncovered([(ch, "c1")], [before, good], descends) == []


def test_alerts_group_by_commit_and_status_lines_say_since_when() -> None:
    at = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    a = StaleModel("model.p.a", "a", "code", "abc123def4567890", at, "fix a", downstream=3)
    b = StaleModel("model.p.b", "b", "code", "abc123def4567890", at)
    c = StaleModel("model.p.c", "c", "config", "fff", at)
    assert {k: [m.name for m in v] for k, v in by_commit([a, b, c]).items()} == \
        {"abc123def4567890": ["a", "b"], "fff": ["c"]}
    [line] = stale_lines([a.to_dict()], datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    assert line.startswith("a: stale on main since abc123def456, 3 h (+3 downstream table(s)); rescue a+")


def test_an_in_memory_parse_compares_equal_to_the_same_project_in_manifest_json() -> None:
    """The branch side may come from dbt's in-memory manifest (a cached parse writes no
    manifest.json), shaped with MANIFEST_CONFIG_KEYS only; production's manifest.json holds every
    config key. Unchanged models must not look changed (schema, alias, lookback were missing)."""
    assert set(DATA_CONFIG_KEYS) <= set(MANIFEST_CONFIG_KEYS)
    full = {"materialized": "view", "schema": "staging", "alias": None, "lookback": 1, "database": None,
            "persist_docs": {}, "grants": {}, "quoting": {}, "column_types": {}}
    prod = manifest(node("stg_orders", "1", **full))
    shaped = {k: v for k, v in {**prod["nodes"]["model.p.stg_orders"]["config"]}.items()
              if k in MANIFEST_CONFIG_KEYS}
    branch = manifest({**prod["nodes"]["model.p.stg_orders"], "config": shaped})
    assert changed_models(branch, prod) == []
    # dbt's in-memory config holds a datetime where manifest.json has its ISO text (microbatch begin).
    micro = manifest(node("events", "2", begin="2026-01-01T00:00:00", batch_size="month"))
    in_memory = manifest(node("events", "2", begin=datetime(2026, 1, 1), batch_size="month"))
    assert changed_models(in_memory, micro) == []
    moved = manifest({**prod["nodes"]["model.p.stg_orders"], "config": {**shaped, "schema": "marts"}})
    assert [c.what for c in changed_models(moved, prod)] == ["config"]
