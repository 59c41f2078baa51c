"""Turn each request's selection into the exact set of dbt models, with located findings.

Codes:

| code  | severity | problem                                                        |
|-------|----------|----------------------------------------------------------------|
| RR200 | error    | the selection matches no model (with the nearest model names)  |
| RR201 | error    | dbt refused the selection (unknown method, bad syntax, no state) |
| RR205 | warning  | one selector of a union matches no model (probably a typo; nearest names suggested) |
| RR206 | warning  | an exclude selector removes nothing                            |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .model import Finding, ProjectGraph, Request, Severity
from .selection import check_selectors
from .suggest import did_you_mean


class Selector(Protocol):
    """What resolution needs from dbt (adapters.dbt.DbtProject implements it)."""

    def select(self, select: Sequence[str], exclude: Sequence[str] = ()) -> set[str]: ...

    def graph(self) -> ProjectGraph: ...


def safety_findings(request: Request) -> list[Finding]:
    """Selector safety checks that need no dbt (run before dbt is even loaded)."""
    return check_selectors(request.select, field="select", path=request.path,
                           line=request.line_of("select")) + \
        check_selectors(request.exclude, field="exclude", path=request.path,
                        line=request.line_of("exclude"))


def resolve(request: Request, dbt: Selector) -> tuple[set[str], list[Finding]]:
    """The models a request selects, as dbt would select them, plus findings."""
    from .adapters.dbt import SelectionError

    path, sel_line = request.path, request.line_of("select")
    try:
        models = dbt.select(request.select, request.exclude)
    except SelectionError as exc:
        return set(), [Finding("RR201", Severity.ERROR,
                               f"dbt cannot resolve this selection: {exc}", path, sel_line)]
    findings: list[Finding] = []
    if len(request.select) > 1:
        for i, item in enumerate(request.select):
            if not dbt.select([item]):
                findings.append(Finding(
                    "RR205", Severity.WARNING,
                    f"selector '{item}' matches no model; check the name (dbt ignores it silently)."
                    + did_you_mean(item, dbt.graph()),
                    path, request.line_of("select", i)))
    if request.exclude:
        without = dbt.select(request.select)
        if without == models:
            findings.append(Finding("RR206", Severity.WARNING,
                                    "exclude removes no model from the selection; remove it or fix it",
                                    path, request.line_of("exclude")))
    if not models:
        hints = "".join(did_you_mean(item, dbt.graph()) for item in request.select
                        if not dbt.select([item]))
        findings.append(Finding(
            "RR200", Severity.ERROR,
            "the selection matches no model; check names with `dbt ls --resource-type model --select ...`."
            + hints, path, sel_line))
    return models, findings
