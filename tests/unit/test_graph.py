"""graph: manifest dict -> ProjectGraph, on hand-made dicts and on the real GitLab manifest."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from rescue_runner.graph import graph_from_manifest_dict, load_manifest_json, manifest_identity
from rescue_runner.lineage import lineage_levels


def manifest() -> dict[str, Any]:
    return {
        "metadata": {"dbt_version": "1.11.16"},
        "nodes": {
            "model.p.orders": {
                "resource_type": "model",
                "name": "orders",
                "original_file_path": "models/orders.sql",
                "checksum": {"name": "sha256", "checksum": "aaa"},
                "tags": ["daily"],
                "meta": {"owner": "ana"},
                "config": {
                    "materialized": "incremental",
                    "full_refresh": False,
                    "incremental_strategy": "microbatch",
                    "event_time": "created_at",
                    "begin": "2024-01-01",
                    "batch_size": "day",
                },
                "depends_on": {"nodes": ["seed.p.codes", "source.p.raw.orders"]},
            },
            "seed.p.codes": {"resource_type": "seed", "name": "codes", "checksum": {"checksum": "bbb"}},
            "snapshot.p.snap": {"resource_type": "snapshot", "name": "snap", "config": {}},
            "test.p.not_null": {"resource_type": "test", "depends_on": {"nodes": ["model.p.orders"]}},
            "analysis.p.adhoc": {"resource_type": "analysis"},
        },
        "sources": {"source.p.raw.orders": {"resource_type": "source", "name": "orders"}},
        "parent_map": {
            "model.p.orders": ["source.p.raw.orders", "seed.p.codes", "seed.p.codes"],
            "seed.p.codes": [],
            "test.p.not_null": ["model.p.orders"],
        },
    }


def test_nodes_are_the_selectable_ones_with_their_config() -> None:
    g = graph_from_manifest_dict(manifest())
    assert sorted(g.nodes) == ["model.p.orders", "seed.p.codes", "snapshot.p.snap"]
    orders = g.nodes["model.p.orders"]
    assert (orders.name, orders.resource_type, orders.materialized) == ("orders", "model", "incremental")
    assert orders.full_refresh is False
    assert (orders.incremental_strategy, orders.event_time, orders.begin, orders.batch_size) == (
        "microbatch",
        "created_at",
        "2024-01-01",
        "day",
    )
    assert orders.tags == ("daily",) and orders.meta == {"owner": "ana"}
    assert orders.original_file_path == "models/orders.sql"
    assert g.nodes["seed.p.codes"].full_refresh is None


def test_parents_cover_every_node_sorted_and_deduplicated() -> None:
    g = graph_from_manifest_dict(manifest())
    assert g.parents["model.p.orders"] == ("seed.p.codes", "source.p.raw.orders")
    assert g.parents["test.p.not_null"] == ("model.p.orders",)
    # absent from parent_map: still a key, without parents
    assert g.parents["snapshot.p.snap"] == () and g.parents["source.p.raw.orders"] == ()


def test_depends_on_is_the_fallback_without_parent_map() -> None:
    d = manifest()
    del d["parent_map"]
    g = graph_from_manifest_dict(d)
    assert g.parents["model.p.orders"] == ("seed.p.codes", "source.p.raw.orders")
    assert g.parents["test.p.not_null"] == ("model.p.orders",)
    assert g.parents["analysis.p.adhoc"] == ()


def test_minimal_and_empty_dicts_are_tolerated() -> None:
    g = graph_from_manifest_dict({"nodes": {"model.p.x": {}}})
    assert g.nodes["model.p.x"].name == "x" and g.nodes["model.p.x"].resource_type == "model"
    empty = graph_from_manifest_dict({})
    assert empty.nodes == {} and empty.parents == {} and empty.identity.startswith("sha256:")


def test_identity_follows_checksums_and_membership_not_order() -> None:
    d = manifest()
    base = manifest_identity(d)
    assert graph_from_manifest_dict(d).identity == base
    reordered = copy.deepcopy(d)
    reordered["nodes"] = dict(reversed(list(d["nodes"].items())))
    assert manifest_identity(reordered) == base
    changed = copy.deepcopy(d)
    changed["nodes"]["model.p.orders"]["checksum"]["checksum"] = "zzz"
    assert manifest_identity(changed) != base
    fewer = copy.deepcopy(d)
    del fewer["sources"]["source.p.raw.orders"]
    assert manifest_identity(fewer) != base


def test_load_manifest_json_reads_plain_and_gzipped(tmp_path: Path) -> None:
    plain, packed = tmp_path / "manifest.json", tmp_path / "manifest.json.gz"
    plain.write_text(json.dumps(manifest()), encoding="utf-8")
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        json.dump(manifest(), fh)
    assert load_manifest_json(plain) == load_manifest_json(packed) == manifest()



@pytest.mark.parametrize(("content", "message"), [
    (b"[]", "not a dbt manifest (the top level is a JSON array, not an object)"),
    (b'"manifest"', "the top level is a JSON string"),
    (b"[" * 200_000 + b"]" * 200_000, "not a dbt manifest (JSON nested too deep to read)"),
    (b'{"nodes": {}, "metadata": {}', ":1: not JSON (Expecting ',' delimiter, column 29)"),
    (b'{"nodes": [], "metadata": {}}', "'nodes' is missing or not an object"),
    (b'{"metadata": {}}', "'nodes' is missing or not an object"),
    (b"\xff\xfe\x00garbage", "not a readable manifest (UnicodeDecodeError"),
    (b"\x1f\x8bnot gzip at all", "not a readable manifest (BadGzipFile"),
])
def test_malformed_manifests_are_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    from rescue_runner.errors import RescueError

    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    with pytest.raises(RescueError) as err:
        load_manifest_json(path)
    assert message in err.value.message and err.value.exit_code == 2
    assert "target/manifest.json" in str(err.value)


def test_malformed_manifest_on_the_command_line_exits_2_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rescue_runner.cli import main

    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    request = Path(__file__).resolve().parents[2] / "rescues" / "2026-11-23-int-orders-hotfix.yaml"
    assert main(["validate", "--manifest", str(deep), str(request)]) == 2
    err = capsys.readouterr().err
    assert "nested too deep" in err and "internal error" not in err and "Traceback" not in err


@pytest.mark.gitlab
def test_gitlab_manifest_graph(gitlab_manifest_path: Path) -> None:
    d = load_manifest_json(gitlab_manifest_path)
    g = graph_from_manifest_dict(d)
    kinds = [n.resource_type for n in g.nodes.values()]
    assert (kinds.count("model"), kinds.count("seed"), kinds.count("snapshot")) == (2931, 34, 100)
    assert sum(n.materialized == "incremental" for n in g.nodes.values()) == 390
    assert len(d["nodes"]) == 8125 and set(d["nodes"]) | set(d["sources"]) <= set(g.parents)
    assert all(list(ps) == sorted(set(ps)) for ps in g.parents.values())
    assert g.identity == "sha256:8e856fb25cda09fc44354a2ac98f4b9bd868771242150640cacf1efac3a637a8"
    models = [uid for uid, n in g.nodes.items() if n.resource_type == "model"]
    levels = lineage_levels(models, g.parents)
    # 23 levels as documented; following edges through unselected seeds and snapshots
    # (not only model-to-model edges) puts one model one level deeper than the README's count.
    assert len(levels) == 23 and len(levels[0]) == 1116
