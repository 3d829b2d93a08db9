"""Assemble a report from a run directory: which rows, which slices, which provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.report.conditions import ConditionAnalysis, analyse_conditions
from harness.report.data import RunData, check_dimensions, completeness, condition_keys, incomplete_notice, load_run
from harness.report.slices import COUNT_COLUMNS, SliceOptions, SliceTable, build_slice_table
from harness.rundir import CLEAN

CONDITION_DIMENSIONS = frozenset({"condition", "condition_key", "snr_db"})


@dataclass(frozen=True, kw_only=True)
class ReportOptions(SliceOptions):
    """How slices are cut and judged, plus which condition's rows the slice table covers (default: clean)."""

    condition: str | None = None


@dataclass(frozen=True, kw_only=True)
class Report:
    run_dir: Path
    run: dict[str, Any]
    options: ReportOptions
    condition: str | None
    table: SliceTable
    conditions: ConditionAnalysis | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "options": asdict(self.options),
            "metric": self.options.metric,
            "aggregation": f"pooled: {self.options.rate.label} = total errors / total reference {self.options.rate.unit_name}; mean_utterance_wer is the unweighted mean of per-utterance WER",
            "interval": interval_description(self.options),
            "small": small_description(self.options),
            "disparity": DISPARITY_DESCRIPTION,
            "condition": self.condition,
            "complete": bool(self.run.get("completeness", {}).get("complete", True)),
            "incomplete_notice": incomplete_notice(self.run),
            "overall": self.table.overall,
            "slices": self.table.slices,
            "disparities": [asdict(d) for d in self.table.disparities],
            **({"conditions": self.conditions.to_json()} if self.conditions is not None else {}),
            **self.extra,
        }


DISPARITY_DESCRIPTION = (
    "per dimension, among slices that are not small and have a label: equal_wer_test is a studentized test that all "
    "their rates are equal (whole speakers permuted between slices, or resampled when a speaker spans slices), "
    "Holm-adjusted across the report's dimensions; disparity_detected is p_value_holm < alpha. worst/best are the "
    "highest and lowest point estimates; the worst-best gap and ratio and each slice's gap to the best have intervals "
    "from simultaneous (Sidak) per-slice intervals at simultaneous_confidence, which account for picking the worst and "
    "the best from the same data"
)


def interval_description(options: ReportOptions) -> str:
    return (
        f"{options.label} t interval on the log scale (centred for the bias of log WER) with a CR3 (jackknife-type) speaker-clustered variance and "
        f"Bell-McCaffrey degrees of freedom; omitted for small slices"
    )


def small_description(options: ReportOptions) -> str:
    return (
        f"small = fewer than {options.min_speakers:g} effective speakers ((sum of {options.rate.unit_name})^2 / sum of squares "
        f"over speakers) or fewer than {options.min_words} reference {options.rate.unit_name}: no interval, never ranked, tested or an anchor"
    )


def build_report(run_dir: str | Path, options: ReportOptions) -> Report:
    data = load_run(run_dir, texts=False, columns=[*COUNT_COLUMNS, "latency_s"])  # statistics read counts, never transcripts
    check_dimensions(data, list(options.by))
    frame, condition = select_condition(data, options)
    table = build_slice_table(frame, options)
    conditions = analyse_conditions(data.frame, options)
    return Report(run_dir=data.run_dir, run=run_summary(data), options=options, condition=condition, table=table, conditions=conditions)


def select_condition(data: RunData, options: ReportOptions):
    """Slices pool across conditions only when asked to (--by condition); otherwise one condition's rows."""
    frame = data.frame
    keys = condition_keys(frame)
    if options.condition is not None and options.condition not in keys:
        # Checked even when the run has one condition: a mistyped --condition must not pass silently.
        raise ConfigError(f"--condition {options.condition!r} is not in this run. Conditions: {', '.join(keys)}.")
    if CONDITION_DIMENSIONS & set(options.by) or len(keys) <= 1:
        return frame, None if len(keys) != 1 else keys[0]
    chosen = options.condition or (CLEAN if CLEAN in keys else keys[0])
    if chosen not in keys:
        raise ConfigError(f"--condition {chosen!r} is not in this run. Conditions: {', '.join(keys)}.")
    return frame[frame["condition_key"] == chosen], chosen


def run_summary(data: RunData) -> dict[str, Any]:
    record = data.record
    return {
        "run_dir": str(data.run_dir),
        "status": record.get("status"),
        "manifest": record.get("manifest"),
        "backend": record.get("backend"),
        "normalizer": record.get("normalizer"),
        "seed": record.get("seed"),
        "conditions": [c.get("key") for c in record.get("conditions", [])],
        "git": (record.get("environment") or {}).get("git"),
        "created_at": record.get("created_at"),
        "completeness": completeness(record, data.frame),
    }
