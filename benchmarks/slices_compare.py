"""Time worst-slice discovery and run comparison on a large synthetic run, against one pooled-WER groupby.

Usage: python benchmarks/slices_compare.py [--rows 1000000] [--speakers 10000] [--resamples 1000] [--depth 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from harness.report.compare import compare_frames
from harness.report.discovery import discover_slices

ACCENTS = ("us", "england", "indian", "scottish", "nigerian", "australian", "irish", "canadian")
GENDERS = ("female", "male", "other")
AGES = ("teens", "twenties", "thirties", "forties", "fifties", "sixties", "seventies")
DEVICES = ("phone", "laptop", "headset", "car")


def make_results(*, n_rows: int, n_speakers: int, seed: int) -> pd.DataFrame:
    """Scored utterances: accent, gender and age per speaker; device per utterance (a row-level tag).

    Speakers have their own error rate; Indian-accented women and car recordings are planted worse.
    """
    rng = np.random.default_rng(seed)
    accent = rng.integers(0, len(ACCENTS), n_speakers)
    gender = rng.integers(0, len(GENDERS), n_speakers)
    age = rng.integers(0, len(AGES), n_speakers)
    rate = rng.beta(2, 12, n_speakers) + 0.05 * ((accent == 2) & (gender == 0))
    speaker = rng.integers(0, n_speakers, n_rows)
    device = rng.integers(0, len(DEVICES), n_rows)
    words = rng.integers(1, 41, n_rows)
    errors = rng.binomial(words, np.clip(rate[speaker] + 0.02 * (device == 3), 0, 1))

    def tag(values: tuple[str, ...], codes: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(codes, categories=list(values))

    return pd.DataFrame({
        "utterance_id": np.char.add("utt", np.arange(n_rows).astype(str)),
        "status": "ok",
        "cluster": np.char.add("spk", speaker.astype(str)),
        "errors": errors,
        "ref_words": words,
        "accent": tag(ACCENTS, accent[speaker]),
        "gender": tag(GENDERS, gender[speaker]),
        "age": tag(AGES, age[speaker]),
        "device": tag(DEVICES, device),
    })


def timed(function, repeats: int = 1):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_traced_mib(function) -> float:
    # A separate call: tracing allocations slows the code down.
    tracemalloc.start()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--speakers", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    frame_a = make_results(n_rows=args.rows, n_speakers=args.speakers, seed=0)
    # Run B: a fine-tune that removes a tenth of the Indian-accented speakers' errors.
    rng = np.random.default_rng(1)
    indian = (frame_a["accent"] == "indian").to_numpy()
    errors_b = frame_a["errors"].to_numpy().copy()
    errors_b[indian] = rng.binomial(errors_b[indian], 0.9)
    frame_b = frame_a[["utterance_id", "status", "cluster", "errors", "ref_words"]].assign(errors=errors_b)
    tags = ["accent", "gender", "age", "device"]
    print(f"data: {args.rows:,} utterances, {args.speakers:,} speakers, tags {', '.join(tags)} (device varies within speaker), "
          f"{args.resamples} resamples, depth {args.depth}, {os.cpu_count()} CPUs")

    def baseline():
        totals = frame_a.groupby("accent", observed=True)[["errors", "ref_words"]].sum()
        return totals["errors"] / totals["ref_words"]

    baseline_s, _ = timed(baseline, repeats=3)

    def discover():
        return discover_slices(frame_a, tags=tags, max_depth=args.depth, n_resamples=args.resamples, seed=0)

    def compare():
        return compare_frames(frame_a, frame_b, by=tags, n_resamples=args.resamples, seed=0)

    discover_s, found = timed(discover, args.repeats)
    compare_s, compared = timed(compare, args.repeats)
    discover_mib = peak_traced_mib(discover)
    compare_mib = peak_traced_mib(compare)
    max_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    print(f"baseline: pooled WER by accent (one groupby): {baseline_s:8.3f} s")
    print(f"discover_slices:                               {discover_s:8.3f} s  ({discover_s / baseline_s:,.0f}x baseline)  peak traced {discover_mib:,.0f} MiB")
    print(f"  {found.n_enumerated} slices enumerated, {found.n_tried} tried, {found.n_suppressed} suppressed, {len(found.discoveries)} discoveries at FDR 5%")
    for finding in found.discoveries[:3]:
        print(f"  #{finding.rank} {finding.label}: WER {finding.wer:.3f} vs overall {found.overall['wer']:.3f}, excess {finding.excess_errors:,.0f} errors, q {finding.q_value:.2g}")
    print(f"compare_frames (by {len(tags)} tags):             {compare_s:8.3f} s  ({compare_s / baseline_s:,.0f}x baseline)  peak traced {compare_mib:,.0f} MiB")
    accent_gap = next(g for g in compared.gaps if g["dimension"] == "accent")
    print(f"  overall delta {compared.overall['delta']:+.4f} [{compared.overall['delta_ci_low']:+.4f}, {compared.overall['delta_ci_high']:+.4f}]; "
          f"accent gap {accent_gap['gap_a']:.4f} -> {accent_gap['gap_b']:.4f}, change [{accent_gap['gap_change_ci_low']:+.4f}, {accent_gap['gap_change_ci_high']:+.4f}]: {accent_gap['verdict']}")
    print(f"process max RSS: {max_rss_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
