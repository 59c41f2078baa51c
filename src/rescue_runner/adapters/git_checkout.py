"""Clean trees of exact commits: what a flow run builds is a commit, never a working tree.

* ``tree_at(repo_dir, ref, cache_root)``: the runner side (embedded mode). The full SHA of
  ``ref`` in a local repository and a directory holding exactly that commit's files.
* ``fetch_commit(url, sha, cache_root, token=...)``: the worker side. A bare mirror per
  repository URL under ``cache_root/mirrors`` (keyed by a hash of the redacted URL), the
  commit fetched by SHA, then its tree.

Trees come from ``git archive`` (no ``.git``, no hooks, nothing of any working tree) and
are cached per SHA under ``cache_root/trees/<sha>``, written to a temporary directory
first and renamed into place, so a tree directory that exists is complete.

Credentials never reach a file: a token goes to git as an ``http.extraHeader`` through
git's ``GIT_CONFIG_*`` environment variables, credentials embedded in an http(s) URL are
moved into that header, and the mirror never stores the URL (fetches name it on the
command line; no remote is configured). Every error text is redacted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote

from ..errors import RescueError
from ..redact import redact, redact_url, register_secret

_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_GIT_TIMEOUT = 600.0
_BASE_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}  # never wait for a password prompt


class CheckoutError(RescueError):
    """A commit could not be resolved, fetched or written out (the message is redacted)."""


def tree_at(repo_dir: Path, ref: str, cache_root: Path) -> tuple[str, Path]:
    """The full SHA of ``ref`` in the repository at ``repo_dir`` and a directory of its tree.

    Only committed content: uncommitted or untracked files of ``repo_dir`` never appear.
    """
    sha = commit_of(repo_dir, ref)
    return sha, _tree(repo_dir, sha, cache_root, git_dir=None)


def commit_of(repo_dir: Path, ref: str) -> str:
    """The full SHA of the commit ``ref`` names in the repository at ``repo_dir``."""
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise CheckoutError(f"'{ref}' is not a git ref")
    sha = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
               git_dir=None, cwd=repo_dir, what=f"resolve {ref} in {repo_dir}").strip()
    if not _SHA.fullmatch(sha):
        raise CheckoutError(f"git ref '{ref}' does not name a commit in {repo_dir}")
    return sha


def remote_url(repo_dir: Path, remote: str) -> str | None:
    """The fetch URL of ``remote`` in the repository at ``repo_dir`` (None if there is none)."""
    try:
        return _git(["remote", "get-url", "--", remote], git_dir=None, cwd=repo_dir,
                    what=f"read the URL of remote {remote}").strip() or None
    except CheckoutError:
        return None


def fetch_commit(url: str, sha: str, cache_root: Path, *, token: str | None = None) -> Path:
    """A directory holding exactly commit ``sha`` of the repository at ``url``.

    The commit is fetched by SHA into a bare mirror cached under ``cache_root``; a SHA
    the mirror already has is not fetched again. ``token``: sent as HTTP basic auth
    (``user:token``, or ``token`` alone for ``x-access-token:token``), never stored.
    """
    sha = sha.strip().lower()
    if not _SHA.fullmatch(sha):
        raise CheckoutError(f"'{sha}' is not a full commit SHA",
                            hint="flow runs build an exact commit: pass its 40-character SHA")
    if not url or url.startswith("-"):
        raise CheckoutError(f"'{redact_url(url)}' is not a repository URL")
    done = cache_root / "trees" / sha
    if done.is_dir():
        return done
    fetch_url, env = _credentials(url, token)
    mirror = cache_root / "mirrors" / (hashlib.sha256(redact_url(url).encode()).hexdigest()[:24] + ".git")
    with _locked(mirror.with_suffix(".lock")):
        if not (mirror / "HEAD").is_file():
            mirror.mkdir(parents=True, exist_ok=True)
            _git(["init", "--quiet", "--bare", str(mirror)], git_dir=None, cwd=cache_root,
                 what="create the mirror")
        if not _has_commit(mirror, sha):
            shown = redact_url(url)
            try:
                _git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--end-of-options",
                      fetch_url, f"{sha}:refs/rescue/{sha}"], git_dir=mirror, env=env,
                     what=f"fetch {sha} from {shown}")
            except CheckoutError:
                # Servers that refuse wants by SHA: fetch the branches, then look again.
                _git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--end-of-options", fetch_url,
                      "+refs/heads/*:refs/rescue-heads/*"], git_dir=mirror, env=env, what=f"fetch {shown}")
            if not _has_commit(mirror, sha):
                raise CheckoutError(f"commit {sha} is not in {shown}",
                                    hint="was it pushed? flow runs build only commits the remote has")
    return _tree(mirror, sha, cache_root, git_dir=mirror)


def _tree(repo: Path, sha: str, cache_root: Path, *, git_dir: Path | None) -> Path:
    dest = cache_root / "trees" / sha
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=dest.parent))
    try:
        args = ["git", *(["--git-dir", str(git_dir)] if git_dir else []), "archive", "--format=tar", sha]
        with subprocess.Popen(args, cwd=repo, env=_env(None), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(tmp, filter="data")  # no absolute paths, no links leaving the tree
            err = proc.stderr.read().decode(errors="replace")
        if proc.returncode != 0:
            raise CheckoutError(f"git archive {sha} failed: {redact(err.strip())}")
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():  # lost a race to another writer of the same SHA: theirs is complete
                raise
    except tarfile.TarError as exc:
        raise CheckoutError(f"commit {sha}: cannot write its tree: {redact(str(exc))}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _credentials(url: str, token: str | None) -> tuple[str, dict[str, str]]:
    """The URL to fetch (credentials removed for http(s)) and the environment carrying them."""
    env: dict[str, str] = {}
    fetch_url = url
    scheme = url.partition("://")[0].lower()
    if scheme in ("http", "https"):
        rest = url.partition("://")[2]
        host_end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
        userinfo = rest[:host_end].rpartition("@")[0]
        if ":" in userinfo:  # user:password in the URL: into the header, out of the command line
            token = token or unquote(userinfo)
            fetch_url = redact_url(url)
        if token:
            register_secret(token)
            basic = token if ":" in token else f"x-access-token:{token}"
            register_secret(basic.partition(":")[2])
            header = "Authorization: Basic " + base64.b64encode(basic.encode()).decode()
            register_secret(header.rpartition(" ")[2])
            env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                   "GIT_CONFIG_VALUE_0": header}
    elif token:
        raise CheckoutError(f"a repository token needs an http(s) URL, not {redact_url(url)}",
                            hint="use the worker's own ssh credentials, or an https URL")
    return fetch_url, env


def _has_commit(git_dir: Path, sha: str) -> bool:
    res = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "-e", f"{sha}^{{commit}}"],
                         env=_env(None), capture_output=True, check=False)
    return res.returncode == 0


def _git(args: list[str], *, git_dir: Path | None, what: str, cwd: Path | None = None,
         env: Mapping[str, str] | None = None) -> str:
    cmd = ["git", *(["--git-dir", str(git_dir)] if git_dir else []), *args]
    try:
        res = subprocess.run(cmd, cwd=cwd, env=_env(env), capture_output=True, text=True,
                             timeout=_GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckoutError(f"git could not {what}: {redact(str(exc))}") from exc
    if res.returncode != 0:
        detail = redact((res.stderr or res.stdout).strip()) or f"exit code {res.returncode}"
        raise CheckoutError(f"git could not {what}: {detail}")
    return res.stdout


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}
    env.update(_BASE_ENV)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One fetcher per mirror at a time (concurrent flow runs on one worker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: git's own ref locks still keep the mirror consistent
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
