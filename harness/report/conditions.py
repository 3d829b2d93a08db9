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
from harness.report.data import condition_keys
from harness.report.slices import NOT_GIVEN, SliceOptions, dimensions, finite_or_none, label_frame
from harness.rundir import CLEAN


@dataclass(frozen=True, kw_only=True)
class ConditionAnalysis:
    """Per (dimension, slice, condition): the rate clean and degraded, the change, and pairwise tests."""

    rows: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    conditions: list[dict[str, Any]]
    metric: str = "wer"
    confidence: float = stats.DEFAULT_CONFIDENCE

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "definition": (
                f"Rows are utterances scored both clean and under the condition (paired). degradation = {self.metric}_condition - {self.metric}_clean, "
                "with a t interval from the jackknife-type (CR3) speaker-clustered variance and Bell-McCaffrey df, and a sign-flip "
                "permutation p-value over speakers; relative = condition / clean - 1, interval on the log of the ratio. "
                "Intervals are omitted for small slices and where fewer than min_speakers speakers changed at all."
            ),
            "tests_definition": (
                "differential degradation of slice A vs slice B: degradation(A) - degradation(B), Welch t test from the two "
                "clustered variances (speakers must not be shared); Holm-adjusted within each (dimension, condition) family. "
                "Only labelled slices that are not small are tested."
            ),
            "conditions": self.conditions,
            "slices": self.rows,
            "differential_tests": self.tests,
        }


def analyse_conditions(frame: pd.DataFrame, options: SliceOptions) -> ConditionAnalysis | None:
    """None when the run has no condition other than clean."""
    keys = condition_keys(frame)
    degraded = [k for k in keys if k != CLEAN]
    if CLEAN not in keys or not degraded:
        return None
    metric = options.rate
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
        paired_clean, paired_under = clean.loc[common].reset_index(), under.loc[common].reset_index()
        for dim in dims:
            labelled_clean = label_frame(paired_clean, dim) if dim else paired_clean.assign(_all="all")
            labelled_under = labelled_clean.assign(**{metric.errors: paired_under[metric.errors].to_numpy()})
            by = list(dim) if dim else ["_all"]
            cells_clean = stats.cells_from_frame(labelled_clean, by=by, errors=metric.errors, words=metric.units)
            cells_under = stats.cells_from_frame(labelled_under, by=by, errors=metric.errors, words=metric.units)
            change = stats.paired_changes(cells_clean, cells_under, options, family_size=cells_clean.n_slices)
            under_intervals = stats.slice_intervals(cells_under, options)
            first = len(rows)
            rows.extend(_slice_rows(change, under_intervals, dim, key, condition_info, metric))
            tests.extend(_differential_tests(change, cells_clean, rows[first:], dim, key, options))
    conditions = [
        {"key": k, "profile": str(condition_info.loc[k, "condition"]), "snr_db": finite_or_none(condition_info.loc[k, "snr_db"])}
        for k in keys
    ]
    return ConditionAnalysis(rows=rows, tests=tests, conditions=conditions, metric=metric.name, confidence=options.confidence)


def _slice_rows(change: stats.PairedChange, under: stats.SliceIntervals, dim, key, condition_info, metric) -> list[dict[str, Any]]:
    out = []
    for i, label in enumerate(change.slices):
        values = label if isinstance(label, tuple) else (label,)
        small = bool(change.small[i])
        out.append({
            "dimension": "×".join(dim) if dim else "overall",
            "by": dict(zip(dim, map(str, values))) if dim else {},
            "condition": key, "profile": str(condition_info.loc[key, "condition"]), "snr_db": finite_or_none(condition_info.loc[key, "snr_db"]),
            "n_utterances": int(under.n_utterances[i]), "n_speakers": int(change.n_speakers[i]),
            "n_effective_speakers": round(float(change.n_effective_speakers[i]), 2), "ref_words": int(change.words[i]), "small": small,
            "n_speakers_changed": int(change.n_speakers_changed[i]),
            f"{metric.name}_clean": finite_or_none(change.value_a[i]), metric.name: finite_or_none(change.value_b[i]),
            f"{metric.name}_ci_low": finite_or_none(under.lower[i]), f"{metric.name}_ci_high": finite_or_none(under.upper[i]),
            "degradation": finite_or_none(change.delta[i]),
            "degradation_ci_low": None if small else finite_or_none(change.delta_lower[i]),
            "degradation_ci_high": None if small else finite_or_none(change.delta_upper[i]),
            "degradation_p_value": finite_or_none(change.p_value[i]),
            "degradation_relative": finite_or_none(change.relative[i]),
            "degradation_relative_ci_low": None if small else finite_or_none(change.relative_lower[i]),
            "degradation_relative_ci_high": None if small else finite_or_none(change.relative_upper[i]),
        })
    return out


def _differential_tests(change: stats.PairedChange, cells: stats.SliceCells, rows, dim, key, options: SliceOptions) -> list[dict[str, Any]]:
    if not dim:
        return []
    trusted = [i for i, row in enumerate(rows) if not row["small"] and NOT_GIVEN not in row["by"].values()]
    speakers = {i: set(cells.cluster[cells.slice == i].tolist()) for i in trusted}
    results = []
    for a, b in itertools.combinations(trusted, 2):
        if speakers[a] & speakers[b]:
            continue  # speakers shared between the two slices: not an independent comparison
        test = stats.degradation_difference(change, a, b, options)
        results.append({
            "dimension": "×".join(dim), "condition": key, "slice_a": rows[a]["by"], "slice_b": rows[b]["by"],
            "degradation_a": test.value_a, "degradation_b": test.value_b, "difference": test.difference,
            "ci_low": finite_or_none(test.lower), "ci_high": finite_or_none(test.upper), "p_value": finite_or_none(test.p_value),
        })
    if results:
        adjusted = stats.holm([r["p_value"] if r["p_value"] is not None else np.nan for r in results])
        for result, p in zip(results, adjusted):
            result["p_value_holm"] = finite_or_none(p)
            result["significant"] = bool(np.isfinite(p) and p < options.alpha)
    return results


def robustness_plot(analysis: ConditionAnalysis, path_stem: Path) -> list[Path]:
    """WER against SNR, one line per slice with its interval band, one panel per profile; SVG and PNG."""
    import matplotlib.pyplot as plt

    figure = robustness_figure(analysis)
    if figure is None:
        return []
    written = []
    for suffix in (".svg", ".png"):
        target = path_stem.with_suffix(suffix)
        figure.savefig(target, dpi=110)
        written.append(target)
    plt.close(figure)
    return written


def robustness_figure(analysis: ConditionAnalysis):
    """The matplotlib figure behind `robustness_plot`, or None when no condition has an SNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(analysis.rows)
    frame = frame[frame["snr_db"].notna()]
    m = analysis.metric
    metric_label = m.upper()
    if frame.empty:
        return None
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
                clean_wer = line[f"{m}_clean"].iloc[0]
                small = bool(line["small"].iloc[0])
                drawn = axis.plot(x, 100 * line[m].to_numpy(dtype=float), marker="o", linestyle=":" if small else "-", label=f"{label}{' (small)' if small else ''}")[0]
                axis.axhline(100 * clean_wer, color=drawn.get_color(), linewidth=0.6, alpha=0.5)
                low, high = line[f"{m}_ci_low"].to_numpy(dtype=float), line[f"{m}_ci_high"].to_numpy(dtype=float)
                if np.isfinite(low).all() and np.isfinite(high).all():
                    axis.fill_between(x, 100 * low, 100 * high, color=drawn.get_color(), alpha=0.15, linewidth=0)
            axis.invert_xaxis()  # left to right: clean-ish to noisy
            axis.set_title(f"{profile} — by {dim}", fontsize=9)
            axis.set_xlabel("SNR (dB)")
            if c == 0:
                axis.set_ylabel(f"{metric_label} (%)")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    figure.suptitle(f"{metric_label} against SNR\nthin lines: clean {metric_label}; bands: {stats.confidence_label(analysis.confidence)} speaker-clustered intervals", fontsize=9)
    figure.tight_layout()
    return figure
