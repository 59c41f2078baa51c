"""The shapes every policy rule shares: the context a rule reads, what it returns, the rule record.

Rules are pure: they read a :class:`PolicyContext` (request, resolved models, graph, run
history, policy, and ``now`` injected by the caller) and return :class:`Violation` values.
They never read the clock, the warehouse, git or the network. The engine in
``policies/__init__.py`` turns violations into findings according to the policy's
enforcement level for the rule.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ..deployment_mapping import Capabilities
from ..model import Downstream, Finding, NodeInfo, Override, Plan, ProjectGraph, Request
from ..policy import Level, Policy

# How far ahead a window without an end is examined (DST changes, weekdays, quiet windows).
HORIZON = timedelta(days=366)


@dataclass(frozen=True)
class Violation:
    """One breach of one rule: what is wrong and what to do, and where in the request file."""

    message: str
    field: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A policy rule: stable code, kebab-case name, default level, check, user documentation.

    ``scope`` is "request" for rules evaluated per request, "config" for rules the
    application evaluates once per run (RR190).
    """

    code: str
    name: str
    level: Level
    check: Callable[[PolicyContext], Iterable[Violation]]
    doc: str
    scope: Literal["request", "config"] = "request"

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0].strip()


@dataclass(frozen=True)
class PolicyFinding(Finding):
    """A Finding produced by a policy rule: its enforcement ``level`` and the override applied."""

    level: str = ""
    override: Override | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["level"] = self.level
        if self.override is not None:
            d["override"] = {"code": self.override.code, "approved_by": self.override.approved_by,
                             "reason": self.override.reason}
        return d


@dataclass(frozen=True)
class PolicyContext:
    """Everything a rule may look at. ``now`` is injected: rules never read the clock.

    ``seconds`` holds the historical duration of the models that have run history
    (e.g. ``Estimates.seconds``); a model absent from it has no history and is estimated at
    ``default_seconds``. ``plan``, when the caller already built it, is used for batch checks;
    otherwise it is built on demand with the planner.
    """

    request: Request
    models: frozenset[str]
    graph: ProjectGraph
    policy: Policy
    now: datetime
    seconds: Mapping[str, float] = field(default_factory=dict)
    default_seconds: float = 60.0
    plan: Plan | None = None
    deployment: Capabilities | None = None  # what the target deployment can carry (prefect.mapping)
    excluded: frozenset[str] = frozenset()  # models the request's exclude removed on purpose

    # ---- models ---------------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        """The selected models known to the graph, by name."""
        found = [self.graph.nodes[m] for m in self.models if m in self.graph.nodes]
        return sorted(found, key=lambda n: (n.name, n.unique_id))

    def estimate(self, uid: str) -> float:
        return self.seconds.get(uid, self.default_seconds)

    def has_history(self, uid: str) -> bool:
        return uid in self.seconds

    def heavy_reason(self, node: NodeInfo) -> str | None:
        """Why ``node`` is heavy under the policy, or None when it is not."""
        h = self.policy.heavy
        if h.meta_key and _meta_flag(node.meta, h.meta_key):
            return f"meta {h.meta_key} is true"
        if node.materialized and node.materialized in h.materializations:
            return f"materialized {node.materialized}"
        if h.min_minutes is not None and node.unique_id in self.seconds:
            minutes = self.seconds[node.unique_id] / 60
            if minutes >= h.min_minutes:
                return f"takes {minutes:.0f} min in the run history (heavy from {h.min_minutes:g} min)"
        return None

    def heavy(self) -> list[tuple[NodeInfo, str]]:
        """The selected heavy models with the reason each is heavy."""
        return [(n, r) for n in self.nodes() if (r := self.heavy_reason(n)) is not None]

    # ---- the plan (batches) -----------------------------------------------------------------

    @functools.cached_property
    def batches(self) -> list[tuple[tuple[str, ...], float]]:
        """(models, estimated seconds) per planned batch: the caller's plan, or one built now.

        Falls back to one batch of everything when the planner refuses the input (a graph with
        a cycle), so batch checks err on the blocking side.
        """
        if self.plan is not None:
            return [(b.models, b.estimated_seconds) for b in self.plan.batches]
        from ..estimates import Estimates
        from ..planner import build_plan

        try:
            plan = build_plan(self.request, self.models, self.graph,
                              Estimates(dict(self.seconds), default_seconds=self.default_seconds))
        except ValueError:
            ms = tuple(sorted(self.models))
            return [(ms, math.fsum(self.estimate(m) for m in ms))] if ms else []
        return [(b.models, b.estimated_seconds) for b in plan.batches]

    @functools.cached_property
    def downstream(self) -> Downstream:
        """The tables this selection leaves stale (the plan's, or computed now)."""
        if self.plan is not None and self.plan.models:
            return self.plan.downstream
        from ..downstream import stale_downstream

        return stale_downstream(self.models, self.graph, self.excluded)

    # ---- time -----------------------------------------------------------------------------

    def window_period(self) -> tuple[datetime, datetime] | None:
        """The span a request window is examined over: from ``not_before`` (else now) to the
        earliest of ``not_after`` and ``expires`` (else one year on). None when it is empty."""
        w = self.request.window
        start = (w.not_before if w and w.not_before else None) or self.now
        ends = [t for t in ((w.not_after if w else None), self.request.expires) if t is not None]
        end = min([*ends, start + HORIZON])
        return (start, end) if end > start else None


def _meta_flag(meta: Mapping[str, Any], dotted: str) -> bool:
    value: Any = meta
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def short(uid_or_node: str | NodeInfo) -> str:
    """A model's display name."""
    if isinstance(uid_or_node, NodeInfo):
        return uid_or_node.name
    return uid_or_node.rsplit(".", 1)[-1]


def names(items: Iterable[str | NodeInfo], limit: int = 5) -> str:
    """'a, b, c' with '(+N more)' past ``limit``."""
    shown = [short(i) for i in items]
    more = f" (+{len(shown) - limit} more)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def minutes(seconds: float) -> str:
    """A duration for messages: '45 s', '12 min', '2.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def when(at: datetime, tz_name: str | None = None) -> str:
    """An instant for messages: local time in ``tz_name`` (if valid) and UTC."""
    from ..windows import is_valid_timezone, zone

    utc = f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if tz_name and tz_name != "UTC" and is_valid_timezone(tz_name):
        local = at.astimezone(zone(tz_name))
        return f"{local:%Y-%m-%d %H:%M} {tz_name} ({utc})"
    return utc
