"""Adjusting p-values for the number of tests: Holm (family-wise error) and Benjamini-Hochberg (false discovery rate)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.stats._cells import NOT_ONE_DIMENSIONAL
from harness.stats._options import StatsInputError


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error), in input order.

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)), so adjusted values never
    decrease with the raw ones. NaN entries stay NaN and do not count towards m.
    """
    p, adjusted, order = _ascending(pvalues)
    m = order.size
    if m == 0:
        return adjusted
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order.

    Sorted ascending, p_(i) becomes min_{j >= i} min(1, m p_(j) / j); equals
    scipy.stats.false_discovery_control(p, method="bh"). NaN entries stay NaN and do not count towards m.
    """
    p, adjusted, order = _ascending(pvalues)
    m = order.size
    if m == 0:
        return adjusted
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return adjusted


def _ascending(pvalues: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The p-values, an all-NaN result to fill, and the positions of the non-NaN ones in ascending order."""
    p = _pvalues(pvalues)
    valid = np.flatnonzero(~np.isnan(p))
    return p, np.full(p.shape, np.nan), valid[np.argsort(p[valid], kind="stable")]


def _pvalues(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise StatsInputError(NOT_ONE_DIMENSIONAL.format(name="pvalues", shape=p.shape))
    outside = (p < 0) | (p > 1)
    if outside.any():
        row = int(np.argmax(outside))
        raise StatsInputError(f"pvalues must lie in [0, 1]; got {p[row]} at position {row}")
    return p
