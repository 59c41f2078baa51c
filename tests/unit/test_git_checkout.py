"""git_checkout on real git: trees of exact commits, a mirror fetched by SHA, no credential stored."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rescue_runner.adapters.git_checkout import CheckoutError, fetch_commit, tree_at


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, Path, str]:
    """A bare remote and a clone with one pushed commit (model.sql = v1)."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", "--quiet", str(bare), str(work))
    (work / "models").mkdir()
    (work / "models" / "model.sql").write_text("select 1 as v1\n")
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "v1")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    return bare, work, git(work, "rev-parse", "HEAD")


def test_tree_at_holds_the_commit_not_the_working_tree(origin: tuple[Path, Path, str],
                                                       tmp_path: Path) -> None:
    _bare, work, sha = origin
    (work / "models" / "model.sql").write_text("select 1 as uncommitted\n")
    (work / "models" / "untracked.sql").write_text("select 2\n")
    got, tree = tree_at(work, "HEAD", tmp_path / "cache")
    assert got == sha
    assert (tree / "models" / "model.sql").read_text() == "select 1 as v1\n"
    assert not (tree / "models" / "untracked.sql").exists()
    assert not (tree / ".git").exists()
    assert tree_at(work, sha[:10], tmp_path / "cache") == (sha, tree)  # cached per SHA
    assert [p.name for p in (tmp_path / "cache" / "trees").iterdir()] == [sha]  # no temp dirs left


def test_tree_at_unknown_ref(origin: tuple[Path, Path, str], tmp_path: Path) -> None:
    with pytest.raises(CheckoutError, match="nope"):
        tree_at(origin[1], "nope", tmp_path / "cache")
    with pytest.raises(CheckoutError, match="not a git ref"):
        tree_at(origin[1], "--output=x", tmp_path / "cache")


def test_fetch_commit_by_sha_from_a_bare_remote(origin: tuple[Path, Path, str], tmp_path: Path) -> None:
    bare, work, sha1 = origin
    (work / "models" / "model.sql").write_text("select 1 as v2\n")
    git(work, "commit", "--quiet", "-am", "v2")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    sha2 = git(work, "rev-parse", "HEAD")
    (work / "models" / "model.sql").write_text("select 1 as unpushed\n")
    git(work, "commit", "--quiet", "-am", "unpushed")
    unpushed = git(work, "rev-parse", "HEAD")

    cache = tmp_path / "worker-cache"
    url = bare.as_uri()
    old = fetch_commit(url, sha1, cache)
    new = fetch_commit(url, sha2, cache)
    assert (old / "models" / "model.sql").read_text() == "select 1 as v1\n"
    assert (new / "models" / "model.sql").read_text() == "select 1 as v2\n"
    assert len(list((cache / "mirrors").glob("*.git"))) == 1  # one mirror per URL
    with pytest.raises(CheckoutError, match="not in"):
        fetch_commit(url, unpushed, cache)
    with pytest.raises(CheckoutError, match="full commit SHA"):
        fetch_commit(url, "main", cache)


def test_credentials_never_stored_nor_shown(origin: tuple[Path, Path, str], tmp_path: Path) -> None:
    _bare, _work, sha = origin
    cache = tmp_path / "cache"
    secret_url = "https://ci:pl4nted-pw@127.0.0.1:9/data/dbt.git"
    with pytest.raises(CheckoutError) as err:
        fetch_commit(secret_url, sha, cache, token="pl4nted-token")
    assert "pl4nted" not in str(err.value)
    assert "127.0.0.1:9/data/dbt.git" in str(err.value)
    for path in cache.rglob("*"):
        if path.is_file():
            assert b"pl4nted" not in path.read_bytes(), path
    assert all("pl4nted" not in p.name for p in cache.rglob("*"))


def test_token_travels_as_a_header_only(origin: tuple[Path, Path, str], tmp_path: Path) -> None:
    """git sends the token in an Authorization header; the request line carries no credential."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization", "")))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://bot:pw-in-url@127.0.0.1:{server.server_port}/r.git"
        with pytest.raises(CheckoutError) as err:
            fetch_commit(url, origin[2], tmp_path / "cache")
    finally:
        server.shutdown()
    assert "pw-in-url" not in str(err.value)
    assert seen and all("pw-in-url" not in path for path, _ in seen)
    assert seen[0][1] == "Basic " + base64.b64encode(b"bot:pw-in-url").decode()
