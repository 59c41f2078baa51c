"""Drive an existing deployment: how a batch's parameters become *its* parameters (pure).

rescue-runner's own flow takes ``dbt_selects={"select": ...}``, ``full_refresh``,
``event_time_start``/``event_time_end`` and the approved commit. A team's existing
deployment (say the article's ``dbt_rerun`` template) names things its own way:
``dbt_selects={"run": ...}``, a repository URL and a *branch*, a storage path. The
``prefect.mapping`` section of rescue.yaml says where each piece goes::

    prefect:
      deployment: dbt_rerun
      mapping:
        selection: dbt_selects.run      # dotted path of the parameter carrying the selection
        selection_format: string        # string (space-separated selectors) | list
        full_refresh: flag              # a boolean parameter's name, or "flag": --full-refresh in the string
        event_time: flags               # {start: P, end: P}, or "flags": --event-time-* in the string
        ref: dbt_repo_branch            # or commit: P (the approved SHA); ref gets the protected branch
        repo_url: dbt_repo_url          # where the repository URL goes (when rescue-runner sends one)
        fixed: {dbt_project_path: transform, run_results_storage_path: "s3://..."}

Without a mapping, batches go to rescue-runner's own flow unchanged. What a mapping cannot
express is never dropped: ``request_findings`` reports it when the request is validated, and
``check_schema`` compares a mapping with the deployment's real parameter schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import Finding, Request, Severity

FLAG = "flag"
FLAGS = "flags"
STRING = "string"
LIST = "list"

# Codes of the findings a request gets when the target deployment cannot carry it.
FULL_REFRESH_CODE = "RR020"
EVENT_TIME_CODE = "RR021"


class MappingError(ValueError):
    """A mapping that cannot be applied (e.g. flags into a list-shaped selection)."""


@dataclass(frozen=True)
class ParameterMapping:
    """``prefect.mapping`` of rescue.yaml, typed. ``None`` in the config: rescue-runner's own flow."""

    selection: str
    selection_format: str = STRING
    full_refresh: str | None = None  # parameter name, FLAG, or None (cannot)
    event_time: str | tuple[str, str] | None = None  # FLAGS, (start, end) parameter names, or None
    commit: str | None = None
    ref: str | None = None
    repo_url: str | None = None
    token_secret: str | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ParameterMapping:
        et = data.get("event_time")
        if isinstance(et, Mapping):
            et = (str(et["start"]), str(et["end"]))
        return cls(selection=str(data["selection"]),
                   selection_format=str(data.get("selection_format", STRING)),
                   full_refresh=data.get("full_refresh"), event_time=et, commit=data.get("commit"),
                   ref=data.get("ref"), repo_url=data.get("repo_url"), token_secret=data.get("token_secret"),
                   fixed=dict(data.get("fixed") or {}))

    def parameters(self) -> dict[str, str]:
        """Every parameter the mapping writes, by role (top-level names: ``dbt_selects``, not ``.run``)."""
        roles: dict[str, str | None] = {
            "selection": self.selection, "commit": self.commit, "ref": self.ref, "repo_url": self.repo_url,
            "token_secret": self.token_secret,
            "full_refresh": self.full_refresh if self.full_refresh != FLAG else None,
        }
        if isinstance(self.event_time, tuple):
            roles["event_time_start"], roles["event_time_end"] = self.event_time
        out = {role: _top(name) for role, name in roles.items() if name}
        out.update({f"fixed:{k}": _top(k) for k in self.fixed})
        return out


@dataclass(frozen=True)
class Capabilities:
    """Which request features a deployment (through its mapping) can carry."""

    full_refresh: bool = True
    event_time: bool = True
    pinned: bool = True  # builds exactly the approved commit
    ref_only: bool = False  # builds a branch: what runs may differ from what was approved
    ref_parameter: str | None = None

    def lines(self) -> list[str]:
        """Human lines for ``rescue deploy --check`` and ``doctor``."""
        yes = lambda ok: "yes" if ok else "no"  # noqa: E731
        pin = "yes (the approved commit)" if self.pinned else \
            f"no: builds a branch through {self.ref_parameter}; what runs may differ from what was approved" \
            if self.ref_only else "no: the deployment builds whatever it is configured to build"
        return [f"full refresh: {yes(self.full_refresh)}", f"event-time window: {yes(self.event_time)}",
                f"pinned commit: {pin}"]


OWN_FLOW = Capabilities()


def capabilities(mapping: ParameterMapping | None) -> Capabilities:
    """What the mapping can express (everything, for rescue-runner's own flow)."""
    if mapping is None:
        return OWN_FLOW
    flags_ok = mapping.selection_format == STRING
    return Capabilities(
        full_refresh=mapping.full_refresh is not None and (mapping.full_refresh != FLAG or flags_ok),
        event_time=mapping.event_time is not None and (mapping.event_time != FLAGS or flags_ok),
        pinned=mapping.commit is not None,
        ref_only=mapping.commit is None and mapping.ref is not None,
        ref_parameter=mapping.ref,
    )


def map_parameters(mapping: ParameterMapping | None, params: Mapping[str, Any], *,
                   branch: str) -> dict[str, Any]:
    """The target deployment's parameters for one batch.

    ``params`` are rescue-runner's own per-batch parameters (``execution.batch_parameters``:
    ``dbt_selects.select``, ``full_refresh``, ``event_time_start``/``_end``, and, when given,
    ``dbt_repo_commit``, ``dbt_repo_url``, ``dbt_repo_token_secret``); ``branch`` is what a
    ref-only deployment is given (the protected branch). Raises MappingError when the batch
    needs something the mapping cannot express: validation reports that earlier, as a finding.
    """
    if mapping is None:
        return dict(params)
    selectors = str((params.get("dbt_selects") or {}).get("select") or "").split()
    flags: list[str] = []
    if params.get("full_refresh"):
        if mapping.full_refresh is None:
            raise MappingError("the batch is a full refresh and the deployment's mapping cannot express one")
        if mapping.full_refresh == FLAG:
            flags.append("--full-refresh")
    start, end = params.get("event_time_start"), params.get("event_time_end")
    if start or end:
        if mapping.event_time is None:
            raise MappingError("the batch has an event-time window and the deployment's mapping cannot "
                               "express one")
        if mapping.event_time == FLAGS:
            flags += ["--event-time-start", str(start), "--event-time-end", str(end)]
    if flags and mapping.selection_format != STRING:
        raise MappingError("dbt flags can only be passed inside a string-shaped selection")

    out: dict[str, Any] = {}
    for name, value in mapping.fixed.items():
        _put(out, name, value)
    words = [*selectors, *flags]
    _put(out, mapping.selection, " ".join(words) if mapping.selection_format == STRING else list(words))
    if mapping.full_refresh not in (None, FLAG):
        _put(out, str(mapping.full_refresh), bool(params.get("full_refresh")))
    if isinstance(mapping.event_time, tuple):
        _put(out, mapping.event_time[0], start)
        _put(out, mapping.event_time[1], end)
    if mapping.commit and params.get("dbt_repo_commit"):
        _put(out, mapping.commit, params["dbt_repo_commit"])
    if mapping.ref:
        _put(out, mapping.ref, branch)
    if mapping.repo_url and params.get("dbt_repo_url"):
        _put(out, mapping.repo_url, params["dbt_repo_url"])
    if mapping.token_secret and params.get("dbt_repo_token_secret"):
        _put(out, mapping.token_secret, params["dbt_repo_token_secret"])
    return out


def selection_of(mapping: ParameterMapping | None, params: Mapping[str, Any]) -> Any:
    """The value the mapping put at its selection path (for checks and tests)."""
    path = mapping.selection if mapping is not None else "dbt_selects.select"
    value: Any = params
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def request_findings(request: Request, mapping: ParameterMapping | None, *,
                     deployment: str) -> list[Finding]:
    """Located findings for what the request needs and the target deployment cannot carry."""
    cap = capabilities(mapping)
    out: list[Finding] = []
    if request.full_refresh and not cap.full_refresh:
        out.append(Finding(FULL_REFRESH_CODE, Severity.ERROR,
                           f"deployment {deployment} cannot run a full refresh: its parameter mapping "
                           "(prefect.mapping.full_refresh in rescue.yaml) has no way to pass it; remove "
                           "full_refresh or map it (a boolean parameter, or 'flag' when the template passes "
                           "the selection string to dbt)",
                           request.path, request.line_of("full_refresh")))
    if request.event_time is not None and not cap.event_time:
        out.append(Finding(EVENT_TIME_CODE, Severity.ERROR,
                           f"deployment {deployment} cannot run an event-time window: its parameter mapping "
                           "(prefect.mapping.event_time in rescue.yaml) has no way to pass it; remove "
                           "event_time or map it",
                           request.path, request.line_of("event_time")))
    return out


def check_schema(mapping: ParameterMapping | None, schema: Mapping[str, Any],
                 required_own: Sequence[str] = ()) -> list[str]:
    """Problems of a mapping against a deployment's parameter schema (empty: it fits).

    ``schema`` is the deployment's ``parameter_openapi_schema``. For rescue-runner's own flow
    (no mapping) ``required_own`` are the parameter names a batch sends.
    """
    props: Mapping[str, Any] = schema.get("properties") or {}
    if mapping is None:
        return [f"the deployment has no parameter {name!r} (rescue-runner's own flow sends it; "
                "run `rescue deploy`, or map the deployment's parameters in prefect.mapping)"
                for name in required_own if name not in props]
    problems = [f"prefect.mapping.{role.split(':')[0]}: the deployment has no parameter {name!r}"
                for role, name in mapping.parameters().items() if name not in props]
    sel_top, _, sel_key = mapping.selection.partition(".")
    spec = props.get(sel_top) or {}
    kind = spec.get("type")
    if sel_key and kind not in (None, "object"):
        problems.append(f"prefect.mapping.selection: {sel_top!r} is of type {kind}, not an object "
                        f"holding {sel_key!r}")
    if not sel_key:
        want = "string" if mapping.selection_format == STRING else "array"
        if kind not in (None, want):
            problems.append(f"prefect.mapping.selection: {sel_top!r} is of type {kind}, but "
                            f"selection_format {mapping.selection_format} sends the type {want}")
    if mapping.full_refresh not in (None, FLAG):
        t = (props.get(str(mapping.full_refresh)) or {}).get("type")
        if t not in (None, "boolean"):
            problems.append(f"prefect.mapping.full_refresh: {mapping.full_refresh!r} is of type {t}, "
                            "not boolean")
    return problems


def _top(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def _put(out: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = out
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else dict(child) if isinstance(child, Mapping) else {}
            node[part] = child
        node = child
    node[parts[-1]] = value
