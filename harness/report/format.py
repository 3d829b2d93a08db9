"""How numbers and slice names are written in every report: one function per kind of value.

Renderers (terminal, Markdown, CSV, HTML, card) call these and then escape the result for their
format; none formats a rate, an interval or a slice label on its own.
"""

from __future__ import annotations

from typing import Any

DASH = "–"  # shown where a value is undefined or an interval is omitted (small slice, too few speakers)


def pct(value: float | None) -> str:
    """0.2552 -> "25.5%"."""
    return DASH if value is None else f"{100 * value:.1f}%"


def ratio(value: float | None) -> str:
    """2.4103 -> "2.41"; an unbounded ratio (None) -> "–"."""
    return DASH if value is None else f"{value:.2f}"


def points(value: float | None, *, sign: bool = True, unit: bool = True) -> str:
    """A difference of rates in percentage points: 0.055 -> "+5.5 pts"."""
    if value is None:
        return DASH
    text = f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"
    return text + (" pts" if unit else "")


def interval(low: float | None, high: float | None, *, kind: str = "rate") -> str:
    """A rate interval as "16.6–21.4" (percent), a difference as "+2.4 to +8.8" (points), a ratio as "1.86–4.51"."""
    if low is None or high is None:
        return DASH
    if kind == "rate":
        return f"{100 * low:.1f}–{100 * high:.1f}"
    if kind == "difference":
        return f"{points(low, unit=False)} to {points(high, unit=False)}"
    if kind == "ratio":
        return f"{ratio(low)}–{ratio(high)}"
    raise ValueError(f"unknown interval kind {kind!r}")


def bracketed(low: float | None, high: float | None, *, kind: str = "rate") -> str:
    """The same interval as "[16.6, 21.4]" for running text."""
    if kind == "ratio":
        return f"[{ratio(low)}, {ratio(high) if high is not None else '∞'}]"
    if kind == "points":
        return f"[{points(low, sign=False, unit=False)}, {points(high, sign=False, unit=False)}]"
    if low is None or high is None:
        return f"[{DASH}]"
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def p_value(value: float | None) -> str:
    return DASH if value is None else f"{value:.2g}"


def slice_label(by: dict[str, Any]) -> str:
    """{"accent": "us", "gender": "female"} -> "accent=us, gender=female"; {} -> "overall"."""
    return ", ".join(f"{k}={v}" for k, v in by.items()) or "overall"
