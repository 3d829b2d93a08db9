"""Scoring throughput against jiwer alone, and the slice report on 1,000,000 scored rows.

Run: .venv/bin/python benchmarks/scoring.py [--utterances 100000] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import jiwer
import numpy as np
import pandas as pd

from harness.normalize import normalize_basic
from harness.report.slices import SliceOptions, build_slice_table
from harness.scoring import score_many

VOCABULARY = np.array("the a of to and in is it you that he was for on are with as I his they be at one have this from".split())


def make_pairs(n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Reference/hypothesis pairs of 4-20 words with about 20% word errors, in mixed case with punctuation."""
    refs, hyps = [], []
    for length in rng.integers(4, 21, size=n):
        words = VOCABULARY[rng.integers(0, len(VOCABULARY), size=length)]
        noisy = words.copy()
        flips = rng.random(length) < 0.2
        noisy[flips] = VOCABULARY[rng.integers(0, len(VOCABULARY), size=int(flips.sum()))]
        refs.append(" ".join(words).capitalize() + ".")
        hyps.append(" ".join(noisy))
    return refs, hyps


def bench_scoring(n: int) -> None:
    refs, hyps = make_pairs(n, np.random.default_rng(0))
    start = time.perf_counter()
    normalized_refs = [normalize_basic(r) for r in refs]
    normalized_hyps = [normalize_basic(h) for h in hyps]
    jiwer.process_words(normalized_refs, normalized_hyps)
    baseline_s = time.perf_counter() - start
    start = time.perf_counter()
    score_many(refs, hyps, normalize_basic)
    ours_s = time.perf_counter() - start
    print(f"scoring {n:,} utterances (basic normaliser)")
    print(f"  baseline, normalise + jiwer.process_words (corpus totals only): {n / baseline_s:,.0f} utt/s")
    print(f"  asrfair score_many (per-utterance S/D/I/hits + CER counts):   {n / ours_s:,.0f} utt/s")
    print(f"  ratio asrfair / baseline: {baseline_s / ours_s:.2f}")


def make_rows(n_rows: int, n_speakers: int, rng: np.random.Generator) -> pd.DataFrame:
    speakers = rng.integers(0, n_speakers, size=n_rows)
    accents = np.array(["us", "england", "indian", "scotland", "canada", "australia", "african", "ireland"])
    speaker_accent = accents[rng.integers(0, len(accents), size=n_speakers)]
    speaker_gender = np.array(["female", "male", "other"])[rng.integers(0, 3, size=n_speakers)]
    words = rng.integers(3, 25, size=n_rows)
    speaker_rate = rng.beta(2, 8, size=n_speakers)
    errors = rng.binomial(words, speaker_rate[speakers])
    zeros = np.zeros(n_rows, dtype=np.int64)
    return pd.DataFrame({
        "utterance_id": np.arange(n_rows).astype(str), "cluster": speakers.astype(str), "status": "ok",
        "accent": speaker_accent[speakers], "gender": speaker_gender[speakers],
        "ref_words": words, "errors": errors, "substitutions": errors, "deletions": zeros, "insertions": zeros,
        "hits": words - errors, "char_errors": errors * 4, "ref_chars": words * 5, "speaker": speakers.astype(str),
    })


def bench_report(n_rows: int, n_speakers: int, n_resamples: int) -> None:
    frame = make_rows(n_rows, n_speakers, np.random.default_rng(1))
    options = SliceOptions(by=("accent", "gender"), n_resamples=n_resamples, seed=0)
    start = time.perf_counter()
    overall = frame["errors"].sum() / frame["ref_words"].sum()
    baseline_s = time.perf_counter() - start
    start = time.perf_counter()
    table = build_slice_table(frame, options)
    report_s = time.perf_counter() - start
    # Memory in a second, separate pass: tracemalloc slows allocation several-fold and would distort the time.
    tracemalloc.start()
    build_slice_table(frame, options)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"slice report on {n_rows:,} rows, {n_speakers:,} speakers, {n_resamples} permutations, --by accent --by gender ({len(table.slices)} slices)")
    print(f"  baseline, one pooled WER with pandas: {baseline_s * 1000:.1f} ms (WER {overall:.4f})")
    print(f"  asrfair slice table with intervals and disparities: {report_s:.2f} s, peak traced memory {peak / 2**20:,.0f} MiB, max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    print(f"  ratio report / baseline: {report_s / baseline_s:,.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--utterances", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--speakers", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    bench_scoring(args.utterances)
    bench_report(args.rows, args.speakers, args.resamples)


if __name__ == "__main__":
    main()
