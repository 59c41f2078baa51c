"""git behind one small interface (GitPython): the repository of a folder, a file as of a ref.

The only module that imports git. Reads go through the object database (``commit.tree /
path``), never through a checkout or the git command line with user-given arguments, so
a ref from the command line cannot become an option.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import RescueError

MAX_BLOB_BYTES = 1 << 20
_SYMLINK_MODE = 0o120000


def _git() -> Any:
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import without a git executable
        raise RescueError(f"git is not available: {exc}",
                          hint="install git, or run without --base-ref") from exc
    return git


def _repo(start: Path) -> Any:
    git = _git()
    try:
        return git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise RescueError(f"{start}: not inside a git repository",
                          hint="run from a clone of the repository, or leave out --base-ref") from exc


def repo_root(start: Path) -> Path:
    """The working tree root of the repository holding ``start``; RescueError if none."""
    repo = _repo(start)
    if repo.working_tree_dir is None:
        raise RescueError(f"{start}: a bare repository has no working tree")
    return Path(repo.working_tree_dir).resolve()


def git_dir(start: Path) -> Path:
    """The git directory of the repository holding ``start`` (``.git``, or a worktree's)."""
    return Path(_repo(start).git_dir).resolve()


def read_at_ref(start: Path, ref: str, path: str) -> bytes:
    """The bytes of ``path`` (relative to the repository root, '/'-separated) as of ``ref``.

    RescueError (exit 2) when the ref does not name a commit, the file does not exist
    there, or it is not a regular file.
    """
    repo = _repo(start)
    gitdb_exc = _git().exc
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise RescueError(f"'{ref}' is not a git ref", hint="pass a branch, tag or commit, e.g. origin/main")
    try:
        commit = repo.commit(ref)
    except (gitdb_exc.BadName, gitdb_exc.BadObject, ValueError, IndexError) as exc:
        raise RescueError(f"git ref '{ref}' does not name a commit in {repo.working_tree_dir}",
                          hint=f"fetch it first (e.g. `git fetch origin {ref.split('/', 1)[-1]}`) "
                          "or check the name") from exc
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts:
        raise RescueError(f"{path}: must be a path inside the repository")
    try:
        blob = commit.tree / rel.as_posix()
    except KeyError as exc:
        raise RescueError(f"{path} does not exist at {ref} ({commit.hexsha[:12]})",
                          hint="the base branch needs the file: merge it there first, "
                          "or validate without --base-ref") from exc
    if blob.type != "blob" or blob.mode == _SYMLINK_MODE:
        raise RescueError(f"{path} at {ref} is not a regular file")
    if blob.size > MAX_BLOB_BYTES:
        raise RescueError(f"{path} at {ref} is {blob.size} bytes; too large for a configuration file")
    data: bytes = blob.data_stream.read()
    return data


def commit_message(start: Path, sha: str) -> str | None:
    """The message of commit ``sha`` in the repository holding ``start``; None when unknown."""
    if not sha or sha.startswith("-"):
        return None
    try:
        return str(_repo(start).commit(sha).message)
    except Exception:  # links are a convenience: an unknown commit just has none
        return None
