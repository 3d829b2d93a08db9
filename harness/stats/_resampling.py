"""Resampling whole speakers: permutations of slice labels (exact or Monte Carlo) and cluster bootstrap counts.

Every function takes a numpy Generator and never touches global random state; each yields chunks so
that memory stays near `CELLS_PER_CHUNK` numbers whatever the number of resamples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

# About 8 MB of float64 per chunk of (resamples x speakers).
CELLS_PER_CHUNK = 1_000_000


def chunk_sizes(total: int, width: int) -> list[int]:
    step = max(1, CELLS_PER_CHUNK // max(width, 1))
    return [min(step, total - start) for start in range(0, total, step)]


def n_assignments(labels: np.ndarray, *, limit: int | None = None) -> int:
    """How many distinct ways the labels can be shuffled among the speakers: n! / prod(n_k!).

    With `limit`, a count certainly above it is returned as limit + 1 without being computed: for
    100,000 speakers the exact count has hundreds of thousands of digits and takes seconds.
    """
    _, counts = np.unique(labels, return_counts=True)
    if limit is not None:
        log_total = math.lgamma(float(counts.sum()) + 1) - sum(math.lgamma(float(count) + 1) for count in counts)
        if log_total > math.log(max(limit, 1)) + 1:  # a margin far beyond lgamma's rounding
            return limit + 1
    total = math.factorial(int(counts.sum()))
    for count in counts:
        total //= math.factorial(int(count))
    return total


def exact_assignments(labels: np.ndarray) -> Iterator[np.ndarray]:
    """Every distinct assignment of the labels to positions, in chunks of rows (one assignment per row).

    Use only when `n_assignments(labels)` is small: it enumerates all of them, the observed one included.
    """
    values, counts = np.unique(labels, return_counts=True)
    n = int(counts.sum())
    buffer: list[np.ndarray] = []

    def fill(assignment: np.ndarray, free: tuple[int, ...], k: int) -> Iterator[np.ndarray]:
        if k == len(values) - 1:
            assignment = assignment.copy()
            assignment[list(free)] = values[k]
            yield assignment
            return
        for chosen in itertools.combinations(free, int(counts[k])):
            assignment[list(chosen)] = values[k]
            remaining = tuple(i for i in free if i not in set(chosen))
            yield from fill(assignment, remaining, k + 1)

    step = max(1, CELLS_PER_CHUNK // max(n, 1))
    for assignment in fill(np.empty(n, dtype=labels.dtype), tuple(range(n)), 0):
        buffer.append(assignment)
        if len(buffer) == step:
            yield np.stack(buffer)
            buffer = []
    if buffer:
        yield np.stack(buffer)


def permuted_labels(labels: np.ndarray, n_resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Monte Carlo permutations: chunks of rows, each row an independent shuffle of `labels`."""
    for count in chunk_sizes(n_resamples, labels.size):
        yield rng.permuted(np.broadcast_to(labels, (count, labels.size)), axis=1)


def bootstrap_counts(n_clusters: int, n_resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Chunks of (resamples x clusters) counts: each row how often each speaker was drawn in n draws with replacement.

    The same distribution as rng.multinomial(n, uniform), drawn as n uniform picks counted with
    bincount (about 3x faster).
    """
    for count in chunk_sizes(n_resamples, n_clusters):
        picks = rng.integers(0, n_clusters, size=(count, n_clusters)) + (np.arange(count) * n_clusters)[:, None]
        yield np.bincount(picks.ravel(), minlength=count * n_clusters).reshape(count, n_clusters).astype(np.float64)


def sign_flip_p_values(
    slice_codes: np.ndarray, cluster_codes: np.ndarray, differences: np.ndarray, n_slices: int, n_resamples: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided sign-flip p-values of sum(differences) = 0 per slice, flipping whole speakers.

    `differences` holds one value per (speaker, slice) cell (run B's errors minus run A's). Under the
    null that the two runs are interchangeable within every speaker, each speaker's difference is as
    likely negated; the randomisation variance sum d_c^2 also estimates the variance of sum d_c
    without symmetry, so the test holds for "no change on average" as speakers grow. Speakers with no
    difference cannot change the statistic, so a slice with at most log2(n_resamples) speakers that
    changed is enumerated exactly; others share Monte Carlo sign draws, p = (1 + extreme) / (1 + B).
    Returns (p_values, exact) per slice.
    """
    p_values = np.ones(n_slices)
    changed = differences != 0
    observed = np.abs(np.bincount(slice_codes, weights=differences, minlength=n_slices))
    n_changed = np.bincount(slice_codes, weights=changed.astype(np.float64), minlength=n_slices).astype(np.int64)
    exact = n_changed == 0  # nothing changed: p = 1 exactly
    tolerance = 1e-9 * np.maximum(1.0, observed)
    small = (n_changed > 0) & (n_changed <= math.log2(max(n_resamples, 1)))  # 2**n_changed sign patterns fit the budget
    for k in np.flatnonzero(small):
        values = differences[(slice_codes == k) & changed]
        signs = ((np.arange(2 ** values.size)[:, None] >> np.arange(values.size)) & 1) * 2.0 - 1.0
        p_values[k] = float(np.mean(np.abs(signs @ values) >= observed[k] - tolerance[k]))
        exact[k] = True
    large = np.flatnonzero(n_changed > 0)
    large = large[~small[large]]
    if large.size:
        keep = np.isin(slice_codes, large) & changed
        speakers, column = np.unique(cluster_codes[keep], return_inverse=True)
        from scipy import sparse

        # (slices x speakers): a speaker whose tags vary has a difference in each of its slices, and
        # one sign flips them all.
        matrix = sparse.csr_matrix((differences[keep], (slice_codes[keep], column.ravel())), shape=(n_slices, speakers.size))
        total = np.asarray(matrix.sum(axis=1)).ravel()
        extreme = np.zeros(n_slices)
        for count in chunk_sizes(n_resamples, speakers.size):
            # A sign is a random bit b: sum (2b - 1) d = 2 sum b d - sum d. Bits are drawn eight to a
            # random byte (not one 64-bit integer each), in the (speakers x resamples) layout the product reads.
            packed = rng.integers(0, 256, size=(speakers.size, (count + 7) // 8), dtype=np.uint8)
            bits = np.unpackbits(packed, axis=1, count=count)
            flipped = np.abs(2 * (matrix @ bits.astype(np.float64)) - total[:, None])
            extreme += np.count_nonzero(flipped >= (observed - tolerance)[:, None], axis=1)
        p_values[large] = (1 + extreme[large]) / (1 + n_resamples)
    return p_values, exact
