"""Last-mile analysis: WER of each slice under each condition, its degradation from clean, and
whether some slices degrade significantly more than others (paired by utterance, clustered by speaker)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import stats
from harness.report.slices import NOT_GIVEN, SliceOptions, dimensions, finite_or_none
from harness.runner import CLEAN


@dataclass(frozen=True, kw_only=True)
class ConditionAnalysis:
    """Per (dimension, slice, condition): WER clean and degraded, the change, and pairwise tests."""

    rows: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    conditions: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "definition": "Rows are utterances scored both clean and under the condition (paired). degradation = WER_condition - WER_clean; relative = WER_condition / WER_clean - 1. Intervals: percentile bootstrap over speakers, the same speakers for clean and degraded.",
            "tests_definition": "differential degradation of slice A vs slice B: (WER_cond - WER_clean)(A) - (same)(B); p-value from a permutation test moving whole speakers between the two slices; Holm-adjusted within each (dimension, condition) family. Only slices that are not small are tested.",
            "conditions": self.conditions,
            "slices": self.rows,
            "differential_tests": self.tests,
        }


def analyse_conditions(frame: pd.DataFrame, options: SliceOptions) -> ConditionAnalysis | None:
    """None when the run has no condition other than clean."""
    keys = list(dict.fromkeys(frame["condition_key"]))
    degraded = [k for k in keys if k != CLEAN]
    if CLEAN not in keys or not degraded:
        return None
    condition_info = frame.drop_duplicates("condition_key").set_index("condition_key")[["condition", "snr_db"]]
    ok = frame[frame["status"] == "ok"]
    clean = ok[ok["condition_key"] == CLEAN].set_index("utterance_id")
    rows: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    dims = [d for d in dimensions(options) if not set(d) & {"condition", "condition_key", "snr_db"}] or [()]
    for key in degraded:
        under = ok[ok["condition_key"] == key].set_index("utterance_id")
        # Pair by utterance: only utterances scored both ways are compared.
        common = clean.index.intersection(under.index)
        paired_clean, paired_under = clean.loc[common], under.loc[common]
        for dim in dims:
            labels = _labels(paired_clean, dim)
            rows.extend(_slice_rows(paired_clean, paired_under, labels, dim, key, condition_info, options))
            tests.extend(_differential_tests(paired_clean, paired_under, labels, dim, key, rows, options))
    conditions = [
        {"key": k, "profile": str(condition_info.loc[k, "condition"]), "snr_db": finite_or_none(condition_info.loc[k, "snr_db"])}
        for k in keys
    ]
    return ConditionAnalysis(rows=rows, tests=tests, conditions=conditions)


def _labels(frame: pd.DataFrame, dim: tuple[str, ...]) -> pd.Series:
    if not dim:
        return pd.Series("all", index=frame.index)
    parts = [frame[name].astype("string").fillna(NOT_GIVEN) for name in dim]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "\x1f" + part
    return joined


def _slice_rows(clean: pd.DataFrame, under: pd.DataFrame, labels: pd.Series, dim, key, condition_info, options: SliceOptions) -> list[dict[str, Any]]:
    stacked_slices = np.concatenate([("clean\x1e" + labels).to_numpy(dtype=object), ("cond\x1e" + labels).to_numpy(dtype=object)])
    intervals = stats.slice_intervals(
        errors=np.concatenate([clean["errors"].to_numpy(), under["errors"].to_numpy()]),
        ref_words=np.concatenate([clean["ref_words"].to_numpy(), under["ref_words"].to_numpy()]),
        clusters=np.concatenate([clean["cluster"].to_numpy(dtype=object)] * 2),
        slices=stacked_slices, seed=options.seed, n_resamples=options.n_resamples,
        confidence=options.confidence, min_speakers=max(2, options.min_speakers),
    )
    position = {label: i for i, label in enumerate(intervals.slices)}
    out = []
    for label in sorted(set(labels)):
        i, j = position[f"clean\x1e{label}"], position[f"cond\x1e{label}"]
        members = labels == label
        n_speakers = int(clean.loc[members, "cluster"].nunique())
        ref_words = int(clean.loc[members, "ref_words"].sum())
        small = n_speakers < options.min_speakers or ref_words < options.min_words
        wer_clean, wer_under = float(intervals.wer[i]), float(intervals.wer[j])
        with np.errstate(divide="ignore", invalid="ignore"):
            absolute = intervals.draws[:, j] - intervals.draws[:, i]
            relative = intervals.draws[:, j] / intervals.draws[:, i] - 1
        omitted = bool(intervals.interval_omitted[i])
        row = {
            "dimension": "×".join(dim) if dim else "overall",
            "by": dict(zip(dim, label.split("\x1f"))) if dim else {},
            "condition": key, "profile": str(condition_info.loc[key, "condition"]), "snr_db": finite_or_none(condition_info.loc[key, "snr_db"]),
            "n_utterances": int(members.sum()), "n_speakers": n_speakers, "ref_words": ref_words, "small": small,
            "wer_clean": finite_or_none(wer_clean), "wer": finite_or_none(wer_under),
            "wer_ci_low": None if omitted else finite_or_none(intervals.lower[j]), "wer_ci_high": None if omitted else finite_or_none(intervals.upper[j]),
            "degradation": finite_or_none(wer_under - wer_clean),
            "degradation_relative": finite_or_none(wer_under / wer_clean - 1) if wer_clean > 0 else None,
        }
        for name, draws in (("degradation", absolute), ("degradation_relative", relative)):
            low, high = _percentiles(draws, options.confidence)
            row[f"{name}_ci_low"] = None if omitted else low
            row[f"{name}_ci_high"] = None if omitted else high
        out.append(row)
    return out


def _differential_tests(clean, under, labels, dim, key, rows, options: SliceOptions) -> list[dict[str, Any]]:
    if not dim:
        return []
    trusted = sorted(r["by"] and "\x1f".join(r["by"].values()) for r in rows if r["condition"] == key and r["dimension"] == "×".join(dim) and not r["small"])
    results = []
    for a, b in itertools.combinations(trusted, 2):
        try:
            test = stats.differential_degradation(
                errors_clean=clean["errors"].to_numpy(), errors_condition=under["errors"].to_numpy(), ref_words=clean["ref_words"].to_numpy(),
                clusters=clean["cluster"].to_numpy(dtype=object), slices=labels.to_numpy(dtype=object), slice_a=a, slice_b=b,
                seed=options.seed, n_resamples=options.n_resamples, confidence=options.confidence, min_speakers=max(2, options.min_speakers),
            )
        except stats.StatsInputError:
            continue  # speakers shared between the two slices: not an independent comparison
        results.append({
            "dimension": "×".join(dim), "condition": key, "slice_a": dict(zip(dim, a.split("\x1f"))), "slice_b": dict(zip(dim, b.split("\x1f"))),
            "degradation_a": test.value_a, "degradation_b": test.value_b, "difference": test.difference,
            "ci_low": finite_or_none(test.lower), "ci_high": finite_or_none(test.upper), "p_value": test.p_value,
        })
    if results:
        adjusted = stats.holm([r["p_value"] for r in results])
        for result, p in zip(results, adjusted):
            result["p_value_holm"] = float(p)
            result["significant"] = bool(p < 1 - options.confidence)
    return results


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def robustness_plot(analysis: ConditionAnalysis, path_stem: Path) -> list[Path]:
    """WER against SNR, one line per slice with its interval band, one panel per profile; SVG and PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(analysis.rows)
    frame = frame[frame["snr_db"].notna()]
    if frame.empty:
        return []
    dims = list(dict.fromkeys(frame["dimension"]))
    profiles = list(dict.fromkeys(frame["profile"]))
    figure, axes = plt.subplots(len(dims), len(profiles), figsize=(max(5.5, 4.2 * len(profiles)), 3.6 * len(dims)), squeeze=False, sharey=True)
    for r, dim in enumerate(dims):
        for c, profile in enumerate(profiles):
            axis = axes[r][c]
            panel = frame[(frame["dimension"] == dim) & (frame["profile"] == profile)]
            for label, line in panel.groupby(panel["by"].map(lambda b: ", ".join(b.values()) or "all"), sort=True):
                line = line.sort_values("snr_db", ascending=False)
                x = line["snr_db"].to_numpy(dtype=float)
                clean_wer = line["wer_clean"].iloc[0]
                small = bool(line["small"].iloc[0])
                drawn = axis.plot(x, 100 * line["wer"].to_numpy(dtype=float), marker="o", linestyle=":" if small else "-", label=f"{label}{' (small)' if small else ''}")[0]
                axis.axhline(100 * clean_wer, color=drawn.get_color(), linewidth=0.6, alpha=0.5)
                low, high = line["wer_ci_low"].to_numpy(dtype=float), line["wer_ci_high"].to_numpy(dtype=float)
                if np.isfinite(low).all() and np.isfinite(high).all():
                    axis.fill_between(x, 100 * low, 100 * high, color=drawn.get_color(), alpha=0.15, linewidth=0)
            axis.invert_xaxis()  # left to right: clean-ish to noisy
            axis.set_title(f"{profile} — by {dim}", fontsize=9)
            axis.set_xlabel("SNR (dB)")
            if c == 0:
                axis.set_ylabel("WER (%)")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    figure.suptitle("WER against SNR\nthin lines: clean WER; bands: 95% speaker bootstrap", fontsize=9)
    figure.tight_layout()
    written = []
    for suffix in (".svg", ".png"):
        target = path_stem.with_suffix(suffix)
        figure.savefig(target, dpi=110)
        written.append(target)
    plt.close(figure)
    return written
