"""dbt argument lists built only from typed, validated fields (pure; no dbt import).

A rescue never hands dbt free text: selectors pass an allowlist, flags come from
typed values, and ``--vars`` is never produced (dbt renders Jinja inside var
values, so a var can run SQL or read the environment). Anything doubtful raises
``UnsafeDbtArgument`` before dbt sees it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

# Letters, digits and the characters of dbt's selector grammar (methods, graph
# operators, intersections, globs). No quotes, spaces, `$`, `{`, `;` or `~`.
SAFE_SELECTOR = re.compile(r"^[A-Za-z0-9_.:+@,*?/=\[\]-]+$")  # also used for requests (selection.py)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_MAX_SELECTOR_LEN = 512

# Keys accepted in the flow's ``dbt_selects`` parameter. run/build/select all
# mean "the selection" (the team's existing deployments use "run").
SELECT_KEYS = ("run", "build", "select")
EXCLUDE_KEY = "exclude"

# dbt reads these from the environment; each would silently change what a rescue
# does (target, full refresh, deferral, empty tables ...). The flow removes them
# from the environment while dbt runs, so only the typed arguments count.
DBT_ENV_OVERRIDES = (
    "DBT_TARGET", "DBT_PROFILE", "DBT_PROJECT_DIR", "DBT_PROFILES_DIR", "DBT_TARGET_PATH",
    "DBT_FULL_REFRESH", "DBT_EMPTY", "DBT_SAMPLE", "DBT_EVENT_TIME_START", "DBT_EVENT_TIME_END",
    "DBT_DEFER", "DBT_DEFER_STATE", "DBT_DEFER_TO_STATE", "DBT_FAVOR_STATE", "DBT_FAVOR_STATE_MODE",
    "DBT_STATE", "DBT_ARTIFACT_STATE_PATH", "DBT_RESOURCE_TYPES", "DBT_EXCLUDE_RESOURCE_TYPES",
    "DBT_INDIRECT_SELECTION", "DBT_WARN_ERROR", "DBT_WARN_ERROR_OPTIONS", "DBT_STORE_FAILURES",
    "DBT_WRITE_JSON", "DBT_FAIL_FAST", "DBT_USE_FAST_TEST_EDGES",
)

# A selection that matches nothing is an error, not a green run that did nothing.
_WARN_ERROR_OPTIONS = '{"error": ["NoNodesForSelectionCriteria"]}'


class UnsafeDbtArgument(ValueError):
    """A value that must not reach dbt's command line."""


def check_selector(token: str) -> str:
    """Return ``token`` if it is a safe selector, else raise UnsafeDbtArgument."""
    if not isinstance(token, str) or not token:
        raise UnsafeDbtArgument("empty selector")
    if token.startswith("-"):
        raise UnsafeDbtArgument(f"selector {token!r} starts with '-' (would be read as a dbt flag)")
    if len(token) > _MAX_SELECTOR_LEN:
        raise UnsafeDbtArgument(f"selector of {len(token)} characters is longer than {_MAX_SELECTOR_LEN}")
    if not SAFE_SELECTOR.match(token):
        bad = "".join(sorted({c for c in token if not SAFE_SELECTOR.match(c)}))
        raise UnsafeDbtArgument(f"selector {token!r} contains characters outside the allowlist: {bad!r}")
    for atom in token.split(","):
        method, sep, value = atom.lstrip("@+0123456789").partition(":")
        if sep and method.split(".")[0] in ("path", "file") and (
            value.startswith("/") or ".." in value.split("/")
        ):
            raise UnsafeDbtArgument(f"selector {token!r} points outside the dbt project")
    return token


def split_selection(text: str) -> tuple[str, ...]:
    """Split a space-separated selection string into checked selector tokens."""
    if not isinstance(text, str):
        raise UnsafeDbtArgument(f"selection must be a string, got {type(text).__name__}")
    return tuple(check_selector(t) for t in text.split())


def parse_dbt_selects(dbt_selects: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``{"run": "a b", "exclude": "c"}`` -> (("a", "b"), ("c",)).

    Keys run/build/select are synonyms and are merged; unknown keys are refused;
    an empty selection is refused (dbt would otherwise build the whole project).
    """
    unknown = sorted(set(dbt_selects) - {*SELECT_KEYS, EXCLUDE_KEY})
    if unknown:
        raise UnsafeDbtArgument(f"dbt_selects: unknown key(s) {unknown}; use one of "
                                f"{[*SELECT_KEYS, EXCLUDE_KEY]}")
    select = _dedupe(t for k in SELECT_KEYS if k in dbt_selects for t in split_selection(dbt_selects[k]))
    exclude = _dedupe(split_selection(dbt_selects.get(EXCLUDE_KEY, "")))
    if not select:
        raise UnsafeDbtArgument("dbt_selects: empty selection (refusing to build the whole project)")
    return select, exclude


def parse_event_time(value: str | datetime | None) -> datetime | None:
    """An ISO date/datetime (naive means UTC) -> aware UTC datetime, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise UnsafeDbtArgument(f"event time {value!r} is not an ISO date or datetime") from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _fmt_time(dt: datetime) -> str:
    # click.DateTime accepts no offset: hand dbt naive UTC.
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _path_arg(name: str, value: str | None) -> list[str]:
    if value is None or value == "":
        return []
    if value.startswith("-") or "\n" in value or "\x00" in value:
        raise UnsafeDbtArgument(f"{name} {value!r} is not a usable path")
    return [f"--{name}", value]


def _common(project_dir: str, profiles_dir: str | None, target: str | None,
            target_path: str | None, log_path: str | None) -> list[str]:
    if target is not None and not _SAFE_NAME.match(target):
        raise UnsafeDbtArgument(f"target {target!r} is not a plain dbt target name")
    args = _path_arg("project-dir", project_dir) + _path_arg("profiles-dir", profiles_dir)
    if not args or args[0] != "--project-dir":
        raise UnsafeDbtArgument("project_dir is required")
    if target:
        args += ["--target", target]
    args += _path_arg("target-path", target_path) + _path_arg("log-path", log_path)
    return [*args, "--no-use-colors"]


def _selection(select: Sequence[str], exclude: Sequence[str]) -> list[str]:
    sel = _dedupe(check_selector(s) for s in select)
    exc = _dedupe(check_selector(s) for s in exclude)
    if not sel:
        raise UnsafeDbtArgument("empty selection (refusing to build the whole project)")
    return ["--select", *sel] + (["--exclude", *exc] if exc else [])


def dbt_build_args(
    *,
    select: Sequence[str],
    exclude: Sequence[str] = (),
    project_dir: str,
    profiles_dir: str | None = None,
    target: str | None = None,
    target_path: str | None = None,
    log_path: str | None = None,
    full_refresh: bool = False,
    event_time_start: datetime | None = None,
    event_time_end: datetime | None = None,
    fast_test_edges: bool = True,
    write_json: bool = True,
    cache_selected_only: bool = False,
) -> list[str]:
    """The argument list of ``dbt build`` for one batch (never ``--vars``).

    Tests run right after their models and a failure skips everything
    downstream (dbt build semantics); a selection matching nothing is an error.
    ``fast_test_edges`` adds dbt's hidden ``--use-fast-test-edges``, which links
    tests into the build graph in linear time (minutes saved on large projects).
    ``write_json=False`` adds ``--no-write-json``: dbt then skips rewriting the whole
    manifest.json (seconds on large projects) and the caller writes run_results.json
    from the returned result. ``cache_selected_only`` adds ``--cache-selected-only``: dbt
    then lists the relations of the batch's schemas only, not of every schema in the project,
    before running (a schema it did not list is queried when a node asks for it).
    Refuses ``full_refresh`` together with an event-time
    window: dbt would then replace the whole microbatch table with only the window.
    """
    if (event_time_start is None) != (event_time_end is None):
        raise UnsafeDbtArgument("event_time_start and event_time_end must be given together")
    if event_time_start is not None and event_time_end is not None:
        if event_time_start.tzinfo is None or event_time_end.tzinfo is None:
            raise UnsafeDbtArgument("event time bounds must be timezone-aware")
        if event_time_start >= event_time_end:
            raise UnsafeDbtArgument("event_time_start must be before event_time_end (end is exclusive)")
        if full_refresh:
            raise UnsafeDbtArgument("full_refresh with an event-time window would replace whole "
                                    "microbatch tables with only the window; choose one")
    args = ["build", *_common(project_dir, profiles_dir, target, target_path, log_path)]
    args += _selection(select, exclude)
    args += ["--indirect-selection", "eager", "--warn-error-options", _WARN_ERROR_OPTIONS]
    if full_refresh:
        args.append("--full-refresh")
    if event_time_start is not None and event_time_end is not None:
        args += ["--event-time-start", _fmt_time(event_time_start),
                 "--event-time-end", _fmt_time(event_time_end)]
    if fast_test_edges:
        args.append("--use-fast-test-edges")
    if not write_json:
        args.append("--no-write-json")
    if cache_selected_only:
        args.append("--cache-selected-only")
    return args


def dbt_docs_args(
    *,
    select: Sequence[str],
    exclude: Sequence[str] = (),
    project_dir: str,
    profiles_dir: str | None = None,
    target: str | None = None,
    target_path: str | None = None,
    log_path: str | None = None,
) -> list[str]:
    """``dbt docs generate`` of the batch, without recompiling the project.

    dbt applies the selection only when it compiles; ``adapters.dbt_lean`` makes it select
    without compiling. ``--no-write-json``: selecting links the graph, which dbt would then
    write out as ``graph.gpickle`` with every node's data (catalog.json is written anyway)."""
    return ["docs", "generate", *_common(project_dir, profiles_dir, target, target_path, log_path),
            *_selection(select, exclude), "--no-write-json", "--no-compile"]


def dbt_parse_args(
    *,
    project_dir: str,
    profiles_dir: str | None = None,
    target: str | None = None,
    log_path: str | None = None,
) -> list[str]:
    """``dbt parse`` into the project's own target folder (keeps partial parsing warm)."""
    return ["parse", *_common(project_dir, profiles_dir, target, None, log_path), "--no-write-json"]


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
