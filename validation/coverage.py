"""Coverage of asrfair's intervals over the designs real data has, against a known truth.

    .venv/bin/python validation/coverage.py [--reps 2000] [--out validation/coverage.md]

Grid: speakers per slice {10, 20, 50, 200} x utterances per speaker {balanced, skewed, dominant} x
speakers' heterogeneity {low, high} x true WER {0.05, 0.15, 0.35}, `--reps` data sets per cell. In
every data set: the slice WER interval (CR2 / Bell-McCaffrey t on the log scale, what reports print),
the change to a second model on the same utterances (compare), the change under a noise condition
(degradation) and its relative form, all computed by harness.stats itself, each data set being one
slice of a single call. Coverage is counted over the data sets the small rule keeps (those are the
ones that get an interval); the share flagged small and coverage without the rule are shown beside.
For reference: the percentile speaker bootstrap the reports used before (500 resamples).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from validation.simulate import DESIGNS, HETEROGENEITY, simulate_sparse_change, simulate_speakers, true_change, true_ratio  # noqa: E402

from harness import stats  # noqa: E402

SPEAKERS = (10, 20, 50, 200)
WERS = (0.05, 0.15, 0.35)
# Second model: a little better on average, unevenly across speakers. Noise: much worse, unevenly.
COMPARE = {"shift": -0.25, "shift_sd": 0.3}
DEGRADE = {"shift": 0.8, "shift_sd": 0.5}
LOW, HIGH = 0.93, 0.97


def cells_for(errors: np.ndarray, words: np.ndarray) -> stats.SliceCells:
    """Each replicate (row) is one slice of its own speakers: every data set in one call."""
    reps, n = words.shape
    cluster = np.arange(reps * n)
    return stats.cells_from_codes(errors.ravel().astype(np.float64), words.ravel().astype(np.float64), cluster, cluster, np.repeat(np.arange(reps), n), tuple(range(reps)))


def percentile_bootstrap(errors: np.ndarray, words: np.ndarray, rng: np.random.Generator, resamples: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The previous method: percentile interval of the ratio over speaker resamples (shared draws across data sets)."""
    reps, n = words.shape
    counts = np.zeros((resamples, n))
    picks = rng.integers(0, n, size=(resamples, n))
    np.add.at(counts, (np.repeat(np.arange(resamples), n), picks.ravel()), 1)
    draws = (counts @ errors.T) / (counts @ words.T)
    return np.quantile(draws, 0.025, axis=0), np.quantile(draws, 0.975, axis=0)


def covers(lower: np.ndarray, upper: np.ndarray, truth: float) -> np.ndarray:
    return (lower <= truth) & (truth <= upper)


def run(reps: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    options = stats.StatsOptions()
    rows = []
    for n, design, heterogeneity, wer in itertools.product(SPEAKERS, DESIGNS, HETEROGENEITY, WERS):
        started = time.perf_counter()
        compare = simulate_speakers(rng, reps=reps, n_speakers=n, design=design, heterogeneity=heterogeneity, wer=wer, **COMPARE)
        degrade = simulate_speakers(rng, reps=reps, n_speakers=n, design=design, heterogeneity=heterogeneity, wer=wer, **DEGRADE)
        intervals = stats.slice_intervals(cells_for(compare.errors_a, compare.words), options)
        kept = ~np.asarray(intervals.small)
        raw_lower, raw_upper = intervals.bounds(options.confidence, mask_small=False)
        slice_cover = covers(raw_lower, raw_upper, wer)
        change_compare = stats.paired_changes(cells_for(compare.errors_a, compare.words), cells_for(compare.errors_b, compare.words), options)
        change_degrade = stats.paired_changes(cells_for(degrade.errors_a, degrade.words), cells_for(degrade.errors_b, degrade.words), options)
        # A change gets an interval when it is not small and enough speakers changed at all.
        kept_compare = ~np.asarray(change_compare.small) & np.isfinite(change_compare.delta_lower)
        kept_degrade = ~np.asarray(change_degrade.small) & np.isfinite(change_degrade.delta_lower)
        old_lower, old_upper = percentile_bootstrap(compare.errors_a, compare.words, rng)
        row = {
            "n": n, "design": design, "heterogeneity": heterogeneity, "wer": wer,
            "n_eff": float(np.median(intervals.n_effective_speakers)),
            "small": float(np.mean(~kept)),
            "wer_cover": _mean(slice_cover[kept]),
            "wer_below": _mean((raw_upper < wer)[kept]),
            "wer_cover_all": _mean(slice_cover),
            "old_cover": _mean(covers(old_lower, old_upper, wer)),
            "compare_cover": _mean(covers(change_compare.delta_lower, change_compare.delta_upper, true_change(wer, heterogeneity, **COMPARE))[kept_compare]),
            "degrade_cover": _mean(covers(change_degrade.delta_lower, change_degrade.delta_upper, true_change(wer, heterogeneity, **DEGRADE))[kept_degrade]),
            "relative_cover": _mean(covers(change_degrade.relative_lower + 1, change_degrade.relative_upper + 1, true_ratio(wer, heterogeneity, **DEGRADE))[kept_degrade]),
            "compare_shown": _mean(kept_compare), "degrade_shown": _mean(kept_degrade),
            "seconds": time.perf_counter() - started,
        }
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def run_sparse(reps: int, seed: int) -> list[dict]:
    """A fine-tune that re-transcribes 10% of utterances: few speakers change at all."""
    rng = np.random.default_rng(seed + 1)
    options = stats.StatsOptions()
    rows = []
    for n, design, wer, shift in itertools.product((10, 20, 50, 200), ("balanced", "skewed"), WERS, (0.0, -0.3)):
        speakers, truth = simulate_sparse_change(rng, reps=reps, n_speakers=n, design=design, heterogeneity="high", wer=wer, changed=0.1, shift=shift)
        change = stats.paired_changes(cells_for(speakers.errors_a, speakers.words), cells_for(speakers.errors_b, speakers.words), options)
        shown = ~np.asarray(change.small) & np.isfinite(change.delta_lower)
        eligible = ~np.asarray(change.small)
        cover = covers(change.delta_lower, change.delta_upper, truth)
        row = {
            "n": n, "design": design, "wer": wer, "shift": shift, "truth": truth,
            "shown": _mean(shown[eligible]), "cover": _mean(cover[shown]),
            "claims": _mean((change.p_value < 0.05)[eligible]) if shift == 0 else float("nan"),
            "power": _mean((change.p_value < 0.05)[eligible]) if shift != 0 else float("nan"),
        }
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def _line(row: dict) -> str:
    return " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def _pct(value: float, *, check: bool = True, small_share: float = 0.0) -> str:
    if not np.isfinite(value):
        return "–"
    text = f"{100 * value:.1f}"
    # A cell the small rule suppresses in most data sets is not held to the band.
    if check and small_share < 0.5 and not (LOW <= value <= HIGH):
        text = f"**{text}**"
    return text


def markdown(rows: list[dict], reps: int, seconds: float) -> str:
    checked = [r for r in rows if r["small"] < 0.5]
    keys = ("wer_cover", "compare_cover", "degrade_cover", "relative_cover")
    failing = [(r, k) for r in checked for k in keys if np.isfinite(r[k]) and not (LOW <= r[k] <= HIGH)]
    lines = [
        "# Coverage of 95% intervals (generated by validation/coverage.py)",
        "",
        f"{reps} data sets per cell; Monte Carlo standard error of a 95% coverage about {100 * np.sqrt(0.95 * 0.05 / reps):.2f} points. "
        f"Run {dt.date.today().isoformat()} on {platform.machine()} ({platform.python_version()}), {seconds:.0f} s.",
        "",
        f"Cells not flagged small in most data sets: {len(checked)} of {len(rows)}. Coverages outside {100 * LOW:.0f}–{100 * HIGH:.0f}% among them: "
        + (", ".join(f"n={r['n']} {r['design']} {r['heterogeneity']} WER {r['wer']} {k}={100 * r[k]:.1f}" for r, k in failing) or "none") + ".",
        "",
        "Columns: `eff spk` median effective speakers; `small` share of data sets the small rule flags (< 8 effective speakers or < 100 words; "
        "those get no interval); `WER` coverage of the slice WER interval over the data sets not flagged small, `miss high` share where the truth is above it; "
        "`WER (all)` coverage without the small rule; `old` the percentile speaker bootstrap reports used before; `compare` the change to a second model "
        "(same utterances); `degr.` the change under noise; `rel.` the relative change under noise. Bold: outside 93–97% in a cell not mostly small.",
        "",
        "| speakers | utterances/speaker | heterogeneity | true WER | eff spk | small | WER | miss high | WER (all) | old | compare | degr. | rel. |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["small"]
        lines.append(
            f"| {r['n']} | {r['design']} | {r['heterogeneity']} | {r['wer']:.2f} | {r['n_eff']:.1f} | {100 * s:.0f}% | "
            f"{_pct(r['wer_cover'], small_share=s)} | {_pct(r['wer_below'], check=False)} | {_pct(r['wer_cover_all'], check=False)} | "
            f"{_pct(r['old_cover'], check=False)} | {_pct(r['compare_cover'], small_share=s)} | {_pct(r['degrade_cover'], small_share=s)} | "
            f"{_pct(r['relative_cover'], small_share=s)} |"
        )
    return "\n".join(lines) + "\n"


def sparse_markdown(rows: list[dict], reps: int) -> str:
    lines = [
        "",
        "## When few speakers change: a fine-tune that re-transcribes 10% of utterances",
        "",
        f"{reps} data sets per cell, high heterogeneity. Run B keeps run A's errors on 90% of utterances and redraws the rest "
        "(shift 0: the same model, so the truth is 0; shift −0.3 on the logit scale: a better model). `shown`: share of non-small "
        "data sets given an interval (the interval is omitted when fewer than 8 speakers changed at all); `cover`: coverage of those "
        "intervals; `p < 0.05`: how often the sign-flip test calls the change significant (a false claim when the shift is 0).",
        "",
        "| speakers | utterances/speaker | true WER | shift | true change (pts) | shown | cover | p < 0.05 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = r["claims"] if r["shift"] == 0 else r["power"]
        lines.append(
            f"| {r['n']} | {r['design']} | {r['wer']:.2f} | {r['shift']:+.1f} | {100 * r['truth']:+.2f} | {_pct(r['shown'], check=False)} | "
            f"{_pct(r['cover'], check=r['shown'] > 0.5)} | {_pct(rate, check=False)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "coverage.md")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(args.reps, args.seed)
    sparse = run_sparse(args.reps, args.seed)
    args.out.write_text(markdown(rows, args.reps, time.perf_counter() - started) + sparse_markdown(sparse, args.reps), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
