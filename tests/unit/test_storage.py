"""Storage by URL on fsspec's real in-memory filesystem: history sync with its cache, manifests,
run artifacts, and one-line errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pytest

from rescue_runner import storage
from rescue_runner.config import config_from_data
from rescue_runner.errors import RescueError
from rescue_runner.pipeline import load_estimates

A, B = "model.p.a", "model.p.b"


def run_results(when: str, *rows: tuple[str, float]) -> bytes:
    return json.dumps({"metadata": {"generated_at": when}, "results": [
        {"unique_id": uid, "status": "success", "execution_time": secs} for uid, secs in rows]}).encode()


@pytest.fixture
def mem() -> tuple[Any, str]:
    fs = fsspec.filesystem("memory")
    root = f"/rescue-{uuid.uuid4().hex[:8]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_history_from_a_url_reads_every_layout_and_fetches_only_what_changed(
        mem: tuple[Any, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fs, root = mem
    # the flow's own runs, a scheduled production run under another name, dbt's companions
    fs.pipe(f"{root}/runs/0001/run_results.json", run_results("2026-11-01T00:00:00Z", (A, 10.0)))
    fs.pipe(f"{root}/runs/0001/summary.json", b"{}")
    fs.pipe(f"{root}/runs/0001/catalog.json", b"{}")
    fs.pipe(f"{root}/runs/0001/dbt.log", b"dbt's own log")
    fs.pipe(f"{root}/prod/2026-11-02.json", run_results("2026-11-02T00:00:00Z", (A, 20.0), (B, 5.0)))
    fs.pipe(f"{root}/run_results_2026-11-03.json.gz", __import__("gzip").compress(
        run_results("2026-11-03T00:00:00Z", (A, 30.0))))
    fs.pipe(f"{root}/README.txt", b"not an artifact")
    cfg = config_from_data(tmp_path, {"dbt": {"history": f"memory://{root}"}})
    est, notes = load_estimates(cfg, [A, B, "model.p.c"])
    assert est.seconds == {A: 20.0, B: 5.0}
    assert est.unknown == {"model.p.c"} and est.sources == 3
    assert notes == ["README.txt: skipped, not a JSON run results file"]
    assert "run history: README.txt: skipped" in caplog.text  # said, not silently ignored

    cache = storage.cache_dir_for(tmp_path / ".rescue" / "cache", f"memory://{root}")
    again = storage.sync_history(f"memory://{root}", tmp_path / ".rescue" / "cache")
    assert (again.files, again.fetched, again.folder) == (3, 0, cache)
    fs.pipe(f"{root}/prod/2026-11-02.json", run_results("2026-11-02T00:00:00Z", (A, 90.0)))
    fs.rm(f"{root}/runs/0001/run_results.json")
    changed = storage.sync_history(f"memory://{root}", tmp_path / ".rescue" / "cache")
    assert (changed.files, changed.fetched) == (2, 1)
    assert not (cache / "runs" / "0001" / "run_results.json").exists()
    assert load_estimates(cfg, [A])[0].seconds == {A: 60.0}


def test_history_reads_only_the_newest_files(mem: tuple[Any, str], tmp_path: Path) -> None:
    fs, root = mem
    for i in range(4):
        fs.pipe(f"{root}/{i}/run_results.json", run_results(f"2026-11-0{i + 1}T00:00:00Z", (A, float(i))))
    synced = storage.sync_history(f"memory://{root}", tmp_path, max_files=2)
    assert synced.files == 2
    assert sorted(p.parent.name for p in synced.folder.rglob("run_results.json")) == ["2", "3"]
    assert synced.skipped == ("2 older file(s) not read (storage.history_files: 2 newest)",)


def test_manifest_and_state_urls_are_fetched_into_the_cache(mem: tuple[Any, str], tmp_path: Path) -> None:
    fs, root = mem
    fs.pipe(f"{root}/prod/manifest.json", b'{"nodes": {}}')
    path = storage.fetch_file(f"memory://{root}/prod/manifest.json", tmp_path)
    assert path.read_bytes() == b'{"nodes": {}}' and tmp_path in path.parents
    assert storage.fetch_state(f"memory://{root}/prod", tmp_path) == path.parent
    local = tmp_path / "here.json"
    assert storage.fetch_file(local, tmp_path) == local  # local paths are used in place
    assert storage.fetch_file(f"file://{local}", tmp_path) == local
    with pytest.raises(storage.StorageError, match=r"prod/missing.json: not found"):
        storage.fetch_file(f"memory://{root}/prod/missing.json", tmp_path)


def test_a_missing_history_location_is_an_error(mem: tuple[Any, str], tmp_path: Path) -> None:
    _, root = mem
    with pytest.raises(RescueError) as err:
        storage.sync_history(f"memory://{root}/nothing", tmp_path)
    assert err.value.exit_code == 2 and "not found" in err.value.message


def test_run_artifacts_are_published_to_the_run_folder(mem: tuple[Any, str]) -> None:
    fs, root = mem
    out = storage.RunArtifacts(f"memory://{root}/runs", "run-1")
    (out.local_dir / "run_results.json").write_text("{}")
    (out.local_dir / "summary.json").write_text('{"status": "success"}')
    published = out.publish()
    out.cleanup()
    assert published[-1].endswith("/runs/run-1/summary.json")  # last: readers can rely on the rest
    assert fs.cat(f"{root}/runs/run-1/summary.json") == b'{"status": "success"}'
    assert not out.local_dir.exists()
    assert storage.read_json(f"memory://{root}/runs/run-1/summary.json") == {"status": "success"}


def test_local_run_artifacts_stay_where_they_are_written(tmp_path: Path) -> None:
    out = storage.RunArtifacts(tmp_path / "runs", "run-2")
    assert out.local_dir == tmp_path / "runs" / "run-2" and out.local_dir.is_dir()
    (out.local_dir / "summary.json").write_text("{}")
    assert out.publish() == [str(tmp_path / "runs" / "run-2" / "summary.json")]
    out.cleanup()
    assert (tmp_path / "runs" / "run-2" / "summary.json").is_file()


def test_errors_are_one_line_without_credentials() -> None:
    url = "s3://user:pa55word@bucket/history?X-Amz-Signature=abc"
    shown = storage.display(url)
    assert "pa55word" not in shown and "abc" not in shown and shown.startswith("s3://bucket/history")
    err = storage.translate(ConnectionRefusedError("connect failed"), url, "list")
    assert "storage unreachable" in err.message and "\n" not in err.message and "pa55word" not in str(err)
    assert "no credentials" in storage.translate(type("NoCredentialsError", (Exception,), {})("x"),
                                                 url, "read").message
    assert storage.is_url("gs://b/x") and not storage.is_url("relative/path")
    assert not storage.is_url(Path("/x"))


def test_a_scheme_without_its_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(url: str, **kw: Any) -> Any:
        raise ImportError("Install gcsfs to access Google Storage")

    monkeypatch.setattr(fsspec.core, "url_to_fs", missing)
    with pytest.raises(storage.StorageError) as err:
        storage.filesystem("gs://bucket/history")
    assert "rescue-runner[gcs]" in str(err.value)
