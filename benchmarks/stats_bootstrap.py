"""Time the speaker-clustered bootstrap on a realistic large run against a naive pandas baseline.

Usage: python benchmarks/stats_bootstrap.py [--rows 1000000] [--speakers 10000] [--slices 20] [--resamples 1000]
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
    """Synthetic results: speakers with their own WER, utterances of 1-40 words, slices as a tag."""
    rng = np.random.default_rng(seed)
    speaker_rate = rng.beta(2, 14, size=n_speakers)
    speaker = rng.integers(0, n_speakers, size=n_rows)
    words = rng.integers(1, 41, size=n_rows)
    return pd.DataFrame(
        {
            "speaker": pd.Series(np.char.add("spk", speaker.astype(str)), dtype=object),
            "slice": rng.integers(0, n_slices, size=n_rows),
            "ref_words": words,
            "errors": rng.binomial(words, speaker_rate[speaker]),
        }
    )


def naive_replicate(frame: pd.DataFrame, speakers: np.ndarray, rng: np.random.Generator) -> pd.Series:
    """One bootstrap replicate the obvious way: pick speakers, gather their rows, group by slice."""
    drawn = pd.DataFrame({"speaker": rng.choice(speakers, size=speakers.size, replace=True)})
    resampled = drawn.merge(frame, on="speaker", how="left")
    totals = resampled.groupby("slice")[["errors", "ref_words"]].sum()
    return totals["errors"] / totals["ref_words"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--speakers", type=int, default=10_000)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive-replicates", type=int, default=5, help="replicates of the naive baseline to time, then scale")
    args = parser.parse_args()

    frame = make_results(n_rows=args.rows, n_speakers=args.speakers, n_slices=args.slices, seed=0)
    print(f"data: {args.rows:,} rows, {args.speakers:,} speakers, {args.slices} slices, {args.resamples} resamples, {os.cpu_count()} CPUs")

    start = time.perf_counter()
    point = frame.groupby("slice")[["errors", "ref_words"]].sum()
    _ = point["errors"] / point["ref_words"]
    point_s = time.perf_counter() - start

    arguments = dict(
        errors=frame["errors"].to_numpy(),
        ref_words=frame["ref_words"].to_numpy(),
        clusters=frame["speaker"].to_numpy(),
        slices=frame["slice"].to_numpy(),
        seed=0,
        n_resamples=args.resamples,
    )
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        result = stats.slice_intervals(**arguments)
        timings.append(time.perf_counter() - start)
    bootstrap_s = min(timings)

    # A separate run for memory: tracing allocations slows the code down.
    tracemalloc.start()
    stats.slice_intervals(**arguments)
    _, traced_peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    start = time.perf_counter()
    stats.disparity(result)
    disparity_s = time.perf_counter() - start

    rng = np.random.default_rng(1)
    speakers = frame["speaker"].unique()
    start = time.perf_counter()
    for _ in range(args.naive_replicates):
        naive_replicate(frame, speakers, rng)
    naive_per_replicate_s = (time.perf_counter() - start) / args.naive_replicates
    naive_s = naive_per_replicate_s * args.resamples

    max_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"point estimates only (one groupby):      {point_s:8.3f} s")
    print(f"slice_intervals ({args.resamples} resamples):       {bootstrap_s:8.3f} s   (best of 3; {bootstrap_s / point_s:.0f}x one groupby)")
    print(f"disparity from the joint draws:          {disparity_s:8.3f} s")
    print(f"naive pandas merge+groupby per replicate: {naive_per_replicate_s:7.3f} s x {args.resamples} = {naive_s:.1f} s (timed {args.naive_replicates}, scaled)")
    print(f"speed-up over naive:                      {naive_s / bootstrap_s:7.0f}x")
    print(f"peak traced memory in slice_intervals:    {traced_peak_bytes / 2**20:7.1f} MiB")
    print(f"process max RSS:                          {max_rss_mib:7.1f} MiB")
    print(f"first slice: WER {result.wer[0]:.4f} [{result.lower[0]:.4f}, {result.upper[0]:.4f}], {result.n_speakers[0]} speakers")


if __name__ == "__main__":
    main()
