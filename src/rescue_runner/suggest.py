"""Did-you-mean for model names: the nearest names to a selector that matched nothing.

Pure: a selector and the graph's names in, a few suggestions out. Candidates are the model
names and the parts of their fqn (package and folders), since a dbt name selector matches
either; distance is the optimal-string-alignment edit distance (a swap of two neighbouring
letters counts once), so ``int_ordrs``, ``int_odrers`` and ``int_orderss`` all find
``int_orders``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .model import ProjectGraph

# dbt graph operators around a name: 2+name+3, @name, name+
_OPERATORS = re.compile(r"^(?:@|\d*\+)?(?P<body>.*?)(?:\+\d*)?$")


def candidates(graph: ProjectGraph) -> set[str]:
    """Every word a name selector could mean: model names and fqn parts (package, folders)."""
    out: set[str] = set()
    for node in graph.nodes.values():
        out.add(node.name)
        out.update(p for p in node.fqn[:-1] if p)
    return out


def bare_name(selector: str) -> str | None:
    """The name inside a selector (``2+int_ordrs+`` -> ``int_ordrs``), or None when the
    selector is not a plain name (``tag:``, ``path:``, wildcards...)."""
    body = _OPERATORS.match(selector)
    name = body.group("body") if body else selector
    if name.startswith("fqn:"):
        name = name[4:]
    if not name or ":" in name or any(c in name for c in "*?[]/,"):
        return None
    return name


def distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance between ``a`` and ``b``; ``limit + 1`` once it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def nearest(word: str, words: Iterable[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` words closest to ``word``, nearest first (ties by name).

    A word is close when at most a third of its letters (at least 1, at most 3) differ;
    case is ignored, and a dotted selector (``marts.int_ordrs``) is judged by its last part.
    """
    last = word.rsplit(".", 1)[-1]
    probe = last.lower()
    if not probe:
        return []
    allowed = max(1, min(3, len(probe) // 3))
    scored = []
    for w in set(words):
        d = distance(probe, w.lower(), allowed)
        if d <= allowed and w != last:
            scored.append((d, w))
    scored.sort()
    if scored and scored[0][0] == 0:  # differs only in case: that is the answer
        scored = [s for s in scored if s[0] == 0]
    return [w for _, w in scored[:limit]]


def did_you_mean(selector: str, graph: ProjectGraph) -> str:
    """`` Did you mean `int_orders+`?`` for a selector that matched nothing, else ``""``.

    Suggestions keep the selector's graph operators, so they can be pasted as they are.
    """
    name = bare_name(selector)
    if name is None:
        return ""
    found = nearest(name, candidates(graph))
    if not found:
        return ""
    last = name.rsplit(".", 1)[-1]
    head, _, tail = selector.rpartition(last)
    shown = [f"`{head}{w}{tail}`" for w in found]
    listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
    return f" Did you mean {listed}?"
