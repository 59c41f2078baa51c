"""estimates: run_results history -> per-model medians, never crashing on bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from rescue_runner.estimates import Estimates, estimates_from_run_results, read_history

A, B, C = "model.p.a", "model.p.b", "model.p.c"


def run_results(when: str | None, *results: tuple[str, str, float]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "results": [
            {
                "unique_id": uid,
                "status": status,
                "execution_time": secs,
                "timing": [{"name": "compile"}, {"name": "execute"}],
            }
            for uid, status, secs in results
        ]
    }
    if when is not None:
        doc["metadata"] = {"generated_at": when, "dbt_version": "1.11.16"}
    return doc


def write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_median_of_the_most_recent_successful_runs(tmp_path: Path) -> None:
    # seven runs of A, newest last; only the five newest count: 30, 40, 50, 60, 1000 -> 50
    for day, secs in enumerate([999.0, 999.0, 30.0, 40.0, 50.0, 60.0, 1000.0], start=1):
        write(
            tmp_path / f"2026-11-{day:02d}" / "run_results.json",
            run_results(f"2026-11-{day:02d}T03:00:00Z", (A, "success", secs)),
        )
    # failures and skips never count, however recent
    write(
        tmp_path / "late" / "run_results.json",
        run_results("2026-12-01T00:00:00Z", (A, "error", 1.0), (B, "skipped", 0.0), (C, "success", 7.5)),
    )
    est, warnings = read_history(tmp_path, models=[A, B, C])
    assert warnings == []
    assert est.seconds == {A: 50.0, C: 7.5}
    assert est.unknown == frozenset({B})
    assert est.for_model(A) == (50.0, False)
    assert est.for_model(B) == (60.0, True)
    assert est.sources == 8


def test_last_and_default_are_settable_and_even_counts_average(tmp_path: Path) -> None:
    write(tmp_path / "run_results.json", run_results("2026-01-02T00:00:00", (A, "success", 10.0)))
    write(tmp_path / "old" / "run_results.json", run_results("2026-01-01T00:00:00", (A, "success", 20.0)))
    est, _ = read_history(tmp_path, last=2, default_seconds=5)
    assert est.seconds[A] == 15.0
    assert est.for_model("model.p.none") == (5.0, True)
    est, _ = read_history(tmp_path, last=1)
    assert est.seconds[A] == 10.0


def test_bad_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    write(tmp_path / "good" / "run_results.json", run_results("2026-01-01T00:00:00Z", (A, "success", 3.0)))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run_results.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "run_results.json").write_bytes(b"\xff\xfe\x00garbage")
    write(tmp_path / "foreign" / "run_results.json", {"nodes": {}})
    write(tmp_path / "nodate" / "run_results.json", run_results(None, (B, "success", 4.0)))
    write(tmp_path / "weird" / "run_results.json", run_results("2026-01-01", ("x", "success", float("inf"))))
    (tmp_path / "manifest.json").write_text("ignored: not a run_results file", encoding="utf-8")
    est, warnings = read_history(tmp_path)
    assert est.seconds == {A: 3.0, B: 4.0}
    text = "\n".join(warnings)
    assert "broken/run_results.json: skipped, unreadable" in text
    assert "binary/run_results.json: skipped, unreadable" in text
    assert "foreign/run_results.json: skipped, not a dbt run_results file" in text
    assert "nodate/run_results.json: no readable metadata.generated_at" in text
    assert "manifest.json" not in text
    assert len(warnings) == 4


def test_gzip_files_single_files_and_missing_folders(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "run_results_2026.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(run_results("2026-01-01T00:00:00Z", (A, "success", 2.0)), fh)
    assert read_history(tmp_path)[0].seconds == {A: 2.0}
    single = tmp_path / "one.json"
    write(single, run_results("2026-01-01T00:00:00Z", (B, "success", 9.0)))
    assert read_history(single)[0].seconds == {B: 9.0}
    est, warnings = read_history(tmp_path / "nowhere", models=[A])
    assert est.seconds == {} and est.unknown == {A} and len(warnings) == 1


def test_timing_is_the_fallback_for_a_missing_execution_time() -> None:
    doc = {
        "metadata": {"generated_at": "2026-01-01T00:00:00Z"},
        "results": [
            {
                "unique_id": A,
                "status": "success",
                "timing": [
                    {
                        "name": "execute",
                        "started_at": "2026-01-01T00:00:00Z",
                        "completed_at": "2026-01-01T00:01:30Z",
                    }
                ],
            }
        ],
    }
    est, warnings = estimates_from_run_results([("mem", doc)])
    assert est.seconds == {A: 90.0} and warnings == []


def test_value_type_helpers_and_argument_checks() -> None:
    est = Estimates({A: 1.0}, default_seconds=30)
    covered = est.covering([A, B])
    assert covered.unknown == {B} and covered.seconds == {A: 1.0} and covered.default_seconds == 30
    assert Estimates().for_model(A) == (60.0, True)
    with pytest.raises(ValueError):
        estimates_from_run_results([], last=0)
    with pytest.raises(ValueError):
        estimates_from_run_results([], default_seconds=float("nan"))
