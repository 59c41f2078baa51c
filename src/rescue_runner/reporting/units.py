"""Units shown to people, written one way everywhere (terminal, PR comment, charts)."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``2.5s``, ``3m00s``, ``1h05m00s``: decimals only under 10 s (the example's models are that quick)."""
    if 0 < seconds < 10:
        return f"{seconds:.1f}s"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"
