"""The `policy:` section of rescue.yaml as a typed, hashable value.

Pure data: this module knows no rule. ``parse_policy(mapping, defaults)`` turns the
(schema-valid) mapping into a :class:`Policy` with every default filled in and every
enforcement level resolved against ``defaults`` (rule code -> default level), or raises
:class:`PolicyError` naming the offending key. The rule registry lives in ``policies/``,
which also offers ``policy_from_config`` (parse with the registry's defaults) and
``policy_hash``. The settings are documented in docs/policy.md; the rules in docs/rules.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from typing import Any, Literal, cast

from .errors import RescueError
from .model import DocPath
from .windows import WEEKDAYS, DailySpec, QuietWindows, is_valid_timezone

Level = Literal["advisory", "soft", "hard"]
LEVELS: tuple[Level, ...] = ("advisory", "soft", "hard")


class PolicyError(RescueError):
    """The policy section is invalid; ``where`` is the path of the offending key."""

    def __init__(self, where: DocPath, message: str) -> None:
        dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in where).replace(".[", "[")
        super().__init__(f"{dotted}: {message}",
                         hint="fix the policy section of rescue.yaml (docs/policy.md)")
        self.where = where
        self.detail = message


@dataclass(frozen=True)
class HeavySettings:
    """What makes a model heavy: any of a history duration, a meta flag, a materialization."""

    min_minutes: float | None = 30.0
    meta_key: str | None = None
    materializations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Size caps (None: no cap)."""

    max_models_per_request: int | None = 100
    max_models_per_batch: int | None = None
    max_batch_minutes: float | None = None


@dataclass(frozen=True)
class RequestRules:
    """Required request fields."""

    ticket_required: bool = False
    reason_min_length: int = 10


@dataclass(frozen=True)
class ExpiryRules:
    """Request expiry."""

    required: bool = False
    max_days: float | None = None
    max_age_days: float | None = None


@dataclass(frozen=True)
class Policy:
    """The whole policy. Build it with ``policy_from_config`` (which resolves every level)."""

    owners: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    heavy: HeavySettings = field(default_factory=HeavySettings)
    quiet: QuietWindows = field(default_factory=QuietWindows)
    limits: Limits = field(default_factory=Limits)
    request: RequestRules = field(default_factory=RequestRules)
    expiry: ExpiryRules = field(default_factory=ExpiryRules)
    enforcement: Mapping[str, Level] = field(default_factory=dict)

    def level(self, code: str) -> Level:
        """The enforcement level of rule ``code`` (its default unless the policy sets one)."""
        try:
            return self.enforcement[code]
        except KeyError:
            raise KeyError(f"unknown rule code {code!r}: build policies with policies.policy_from_config")\
                from None

    def is_approver(self, who: str) -> bool:
        """Whether ``who`` is a policy approver (case-insensitive, a leading '@' optional)."""
        key = _person_key(who)
        return any(_person_key(a) == key for a in self.approvers)

    def to_dict(self) -> dict[str, Any]:
        """Canonical plain data (the input of ``policy_hash``); levels resolved."""

        def window(w: DailySpec) -> dict[str, Any]:
            return {
                "name": w.name,
                "timezone": w.timezone,
                "start": w.start.strftime("%H:%M"),
                "end": w.end.strftime("%H:%M"),
                "weekdays": None if w.weekdays is None else [WEEKDAYS[d] for d in sorted(w.weekdays)],
            }

        return {
            "owners": list(self.owners),
            "approvers": list(self.approvers),
            "heavy": {
                "min_minutes": self.heavy.min_minutes,
                "meta_key": self.heavy.meta_key,
                "materializations": list(self.heavy.materializations),
            },
            "quiet_windows": {"allow": [window(w) for w in self.quiet.allow],
                              "deny": [window(w) for w in self.quiet.deny]},
            "limits": {
                "max_models_per_request": self.limits.max_models_per_request,
                "max_models_per_batch": self.limits.max_models_per_batch,
                "max_batch_minutes": self.limits.max_batch_minutes,
            },
            "request": {"ticket_required": self.request.ticket_required,
                        "reason_min_length": self.request.reason_min_length},
            "expiry": {"required": self.expiry.required, "max_days": self.expiry.max_days,
                       "max_age_days": self.expiry.max_age_days},
            "enforcement": self.levels(),
        }

    def levels(self) -> dict[str, Level]:
        """The level of every rule this policy knows (defaults resolved), by code."""
        return {code: self.enforcement[code] for code in sorted(self.enforcement)}

    def with_defaults(self, defaults: Mapping[str, Level]) -> Policy:
        """This policy with ``defaults`` filled in for every rule it does not set."""
        return replace(self, enforcement={**defaults, **self.enforcement})


def parse_policy(data: Mapping[str, Any] | None, defaults: Mapping[str, Level]) -> Policy:
    """A Policy from the ``policy`` mapping of rescue.yaml; PolicyError for invalid content.

    ``defaults`` maps every known rule code to its default level. The config schema already
    checks shapes; this adds what a schema cannot (IANA zones, known rule codes) and
    re-checks types so that callers passing raw dicts are safe too.
    """
    known = sorted(defaults)
    p = _Reader(data or {}, ("policy",))
    p.only("owners", "approvers", "heavy", "quiet_windows", "limits", "request", "expiry", "enforcement")
    heavy = p.sub("heavy", "min_minutes", "meta_key", "materializations")
    quiet = p.sub("quiet_windows", "allow", "deny")
    limits = p.sub("limits", "max_models_per_request", "max_models_per_batch", "max_batch_minutes")
    req = p.sub("request", "ticket_required", "reason_min_length")
    exp = p.sub("expiry", "required", "max_days", "max_age_days")

    enforcement: dict[str, Level] = dict(defaults)
    raw_levels = p.get("enforcement", dict, {})
    for code, level in sorted(raw_levels.items()):
        if code not in defaults:
            raise PolicyError(("policy", "enforcement", code),
                              f"unknown rule code '{code}'; known codes: {', '.join(known)}")
        if level not in LEVELS:
            raise PolicyError(("policy", "enforcement", code),
                              f"level must be one of {', '.join(LEVELS)}, found {level!r}")
        enforcement[code] = cast(Level, level)

    meta_key = heavy.get("meta_key", str, None, nullable=True)
    return Policy(
        owners=p.people("owners"),
        approvers=p.people("approvers"),
        heavy=HeavySettings(
            min_minutes=heavy.number("min_minutes", 30.0),
            meta_key=meta_key or None,
            materializations=tuple(str(m) for m in heavy.get("materializations", list, [])),
        ),
        quiet=QuietWindows(allow=quiet.windows("allow"), deny=quiet.windows("deny")),
        limits=Limits(
            max_models_per_request=limits.integer("max_models_per_request", 100),
            max_models_per_batch=limits.integer("max_models_per_batch", None),
            max_batch_minutes=limits.number("max_batch_minutes", None),
        ),
        request=RequestRules(
            ticket_required=req.get("ticket_required", bool, False),
            reason_min_length=req.integer("reason_min_length", 10) or 10,
        ),
        expiry=ExpiryRules(
            required=exp.get("required", bool, False),
            max_days=exp.number("max_days", None),
            max_age_days=exp.number("max_age_days", None),
        ),
        enforcement=enforcement,
    )


def _person_key(who: str) -> str:
    return who.strip().lstrip("@").casefold()


class _Reader:
    """Typed access to one mapping of the policy, with located errors."""

    def __init__(self, data: Any, where: DocPath) -> None:
        if not isinstance(data, Mapping):
            raise PolicyError(where, "must be a mapping")
        self.data = data
        self.where = where

    def only(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                raise PolicyError((*self.where, str(key)), f"unknown key; allowed keys: {', '.join(keys)}")

    def sub(self, key: str, *keys: str) -> _Reader:
        r = _Reader(self.data.get(key) or {}, (*self.where, key))
        r.only(*keys)
        return r

    def get(self, key: str, kind: type, default: Any, *, nullable: bool = False) -> Any:
        value = self.data.get(key, default)
        if value is None and (nullable or default is None):
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise PolicyError((*self.where, key), f"must be {kind.__name__}, found {value!r}")
        return value

    def number(self, key: str, default: float | None) -> float | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or value <= 0:
            raise PolicyError((*self.where, key), f"must be a positive number or null, found {value!r}")
        return float(value)

    def integer(self, key: str, default: int | None) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PolicyError((*self.where, key),
                              f"must be a whole number of at least 1 or null, found {value!r}")
        return value

    def people(self, key: str) -> tuple[str, ...]:
        items = self.get(key, list, [])
        out = []
        for i, who in enumerate(items):
            if not isinstance(who, str) or not who.strip():
                raise PolicyError((*self.where, key, i), "must be a name, e-mail address or handle")
            out.append(who.strip())
        return tuple(out)

    def windows(self, key: str) -> tuple[DailySpec, ...]:
        items = self.get(key, list, [])
        return tuple(_window(item, (*self.where, key, i)) for i, item in enumerate(items))


def _window(item: Any, where: DocPath) -> DailySpec:
    r = _Reader(item, where)
    r.only("name", "timezone", "start", "end", "weekdays")
    tz = r.get("timezone", str, "")
    if not tz:
        raise PolicyError((*where, "timezone"), "a quiet window needs an IANA time zone, e.g. Europe/Berlin")
    if not is_valid_timezone(tz):
        raise PolicyError((*where, "timezone"),
                          f"unknown time zone '{tz}'; use an IANA name such as Europe/Berlin or UTC")
    days = r.get("weekdays", list, None)
    weekdays = None
    if days is not None:
        bad = [d for d in days if d not in WEEKDAYS]
        if bad or not days:
            raise PolicyError((*where, "weekdays"), f"must list days among {', '.join(WEEKDAYS)}")
        weekdays = frozenset(WEEKDAYS.index(d) for d in days)
    return DailySpec(start=_clock(r, "start"), end=_clock(r, "end"), timezone=tz, weekdays=weekdays,
                     name=str(r.get("name", str, "")))


def _clock(r: _Reader, key: str) -> time:
    value = r.get(key, str, "")
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts) \
            or int(parts[0]) > 23 or int(parts[1]) > 59:
        raise PolicyError((*r.where, key),
                          f"must be a 24-hour time HH:MM in quotes, e.g. \"22:00\", found {value!r}")
    return time(int(parts[0]), int(parts[1]))
