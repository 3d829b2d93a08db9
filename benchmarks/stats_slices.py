"""Time the slice statistics (intervals, disparity with its permutation test) on a large run against a plain pandas groupby.

Usage: python benchmarks/stats_slices.py [--rows 1000000] [--speakers 10000] [--slices 20] [--resamples 2000]

Everything works from per-speaker sums: the cost after one aggregation grows with speakers x slices,
not with rows, and the intervals are analytic (no bootstrap); only the test of equal WER resamples.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from harness import stats


def make_results(*, n_rows: int, n_speakers: int, n_slices: int, seed: int) -> pd.DataFrame:
    """Synthetic results: speakers with their own WER, utterances of 1-40 words, one slice per speaker (an accent)."""
    rng = np.random.default_rng(seed)
    speaker_rate = rng.beta(2, 14, size=n_speakers)
    speaker_slice = rng.integers(0, n_slices, size=n_speakers)
    speaker = rng.integers(0, n_speakers, size=n_rows)
    words = rng.integers(1, 41, size=n_rows)
    return pd.DataFrame({
        "cluster": pd.Series(np.char.add("spk", speaker.astype(str)), dtype=object),
        "slice": speaker_slice[speaker],
        "ref_words": words,
        "errors": rng.binomial(words, speaker_rate[speaker]),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--speakers", type=int, default=10_000)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    frame = make_results(n_rows=args.rows, n_speakers=args.speakers, n_slices=args.slices, seed=1)
    options = stats.StatsOptions(n_resamples=args.resamples)

    def baseline():
        totals = frame.groupby("slice")[["errors", "ref_words"]].sum()
        return totals["errors"] / totals["ref_words"]

    def ours():
        cells = stats.cells_from_frame(frame, by="slice")
        intervals = stats.slice_intervals(cells, options)
        return intervals, stats.disparity(intervals, cells, options)

    def best_of(function, repeats=3):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = function()
            times.append(time.perf_counter() - started)
        return min(times), result

    baseline_s, _ = best_of(baseline)
    ours_s, (intervals, result) = best_of(ours)
    tracemalloc.start()
    ours()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{args.rows:,} rows, {args.speakers:,} speakers, {args.slices} slices, {args.resamples} permutations; {os.cpu_count()} CPUs")
    print(f"baseline: pooled WER by slice (one pandas groupby)     {baseline_s:8.3f} s")
    print(f"intervals for every slice + disparity + permutation test {ours_s:8.3f} s  ({ours_s / baseline_s:.1f}x baseline)")
    print(f"  test: {result.equal_wer_test.method}, p = {result.equal_wer_test.p_value:.3g} over {result.equal_wer_test.n_resamples} permutations")
    print(f"peak traced memory {peak / 2**20:,.0f} MiB; process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB")


if __name__ == "__main__":
    main()
