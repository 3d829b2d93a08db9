"""Worst-slice discovery: every conjunction of tag values, tested against the overall WER and ranked by excess errors.

"Where does this model fail?" without picking the slices first: all one-tag and two-tag (optionally
three-tag) slices are tried, small ones are suppressed, and the false discovery rate is controlled over
every slice tried, so a long search cannot manufacture findings.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from harness import stats
from harness.errors import ConfigError
from harness.report.build import ReportOptions, run_summary, select_condition
from harness.report.data import RESERVED, RunData, incomplete_notice, load_run
from harness.report import format as fmt
from harness.report.format import DASH
from harness.escaping import escape_markdown, escape_terminal
from harness.report.render import write_json
from harness.report.slices import NOT_GIVEN, MetricOptions

__all__ = [
    "DEFAULT_FDR",
    "DEFAULT_MAX_DEPTH",
    "DiscoveryOptions",
    "DiscoveryResult",
    "SliceFinding",
    "discover_run",
    "discover_slices",
    "print_discovery",
    "render_discovery_markdown",
    "write_discovery",
]

DEFAULT_MAX_DEPTH = 2
DEFAULT_FDR = 0.05
MAX_DEPTH_LIMIT = 3
JSON_FILE = "slices.json"
MARKDOWN_FILE = "slices.md"
# Shown when nothing is significant, so a reader still sees where the point estimates are worst.
N_WORST_SHOWN = 5

BAD_DEPTH = "max_depth must be 1, 2 or 3 (tags combined per slice); got {value}"
BAD_FDR = "fdr must be strictly between 0 and 1 (e.g. 0.05); got {value}"
BAD_MIN_WORDS = "min_words must be a non-negative integer (e.g. 100); got {value}"
NO_TAGS = "no tags to search: the results have no tag columns{given}. Pass tags=... or tag the manifest (--tag-columns)"
UNKNOWN_TAG = "tag {tag!r} is not in the results. Available tags: {available}"
NO_ROWS = "no scored utterances to search{where}: every row failed or the selection is empty"

INTERVAL_METHOD = (
    "rate: t interval on the log scale, CR3 speaker-clustered variance, Bell-McCaffrey df; gap to overall: t interval "
    "from each speaker's influence on the difference (a slice and the overall it is part of are correlated), "
    "the CR3 factor and Bell-McCaffrey df of the slice's speakers"
)
P_VALUE_METHOD = (
    "one-sided t test of rate(slice) > rate(overall) with the same clustered standard error and df; the same "
    "hypothesis as rate(slice) > rate(rest). Valid when a speaker has rows both in and out of a slice (row-level "
    "tags): each speaker's influence is counted whole. Analytic, so it has no Monte Carlo floor"
)
FDR_METHOD = "Benjamini-Hochberg over every slice tried (not only the ones shown)"


@dataclass(frozen=True, kw_only=True)
class DiscoveryOptions(MetricOptions):
    """What is searched, at which false discovery rate; the rate and the statistics options (including
    when a slice is too small to try) are inherited from `MetricOptions`, validated once."""

    tags: tuple[str, ...] | None = None
    max_depth: int = DEFAULT_MAX_DEPTH
    fdr: float = DEFAULT_FDR
    condition: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_options(self)


@dataclass(frozen=True, kw_only=True)
class SliceFinding:
    """One slice tried: its counts, WER, gap to overall with intervals, excess errors and test result.

    `excess_errors` = errors - overall WER x ref_words: how many more errors the slice had than it would
    at the overall rate. `gap_to_worst_parent` (two or more tags) is WER minus the highest WER among the
    slices it refines (one tag dropped): near zero means the intersection adds nothing to its parent.
    """

    slice: dict[str, str]
    depth: int
    n_utterances: int
    n_speakers: int
    n_effective_speakers: float
    n_speakers_outside: int
    ref_words: int
    errors: int
    wer: float
    wer_ci_low: float | None
    wer_ci_high: float | None
    gap_to_overall: float
    gap_ci_low: float | None
    gap_ci_high: float | None
    ratio_to_overall: float | None
    excess_errors: float
    gap_to_worst_parent: float | None
    p_value: float | None
    q_value: float | None
    significant: bool
    rank: int | None

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.slice.items())


@dataclass(frozen=True, kw_only=True)
class DiscoveryResult:
    """Every slice tried, the ranked discoveries, and how many slices were enumerated, suppressed or merged.

    `n_enumerated` = `n_tried` + `n_suppressed` + `n_redundant` + `n_whole`: a slice is suppressed below
    `min_speakers` speakers or `min_words` words (never tested, never ranked), redundant when it holds
    exactly the rows of a slice with fewer tags, and whole when it is every row (a tag with one value).
    """

    options: DiscoveryOptions
    tags: tuple[str, ...]
    condition: str | None
    overall: dict[str, Any]
    candidates: tuple[SliceFinding, ...]
    n_enumerated: int
    n_tried: int
    n_suppressed: int
    n_redundant: int
    n_whole: int
    run: dict[str, Any] | None = None
    run_dir: Path | None = None
    methods: dict[str, str] = field(default_factory=lambda: {"interval": INTERVAL_METHOD, "p_value": P_VALUE_METHOD, "multiple_testing": FDR_METHOD})

    @property
    def discoveries(self) -> tuple[SliceFinding, ...]:
        """Significant slices (BH-adjusted q <= fdr), worst first by excess errors."""
        return tuple(sorted((c for c in self.candidates if c.significant), key=lambda c: c.rank))

    def worst(self, n: int = N_WORST_SHOWN) -> tuple[SliceFinding, ...]:
        """The n slices tried with the most excess errors, significant or not."""
        return tuple(sorted(self.candidates, key=lambda c: -c.excess_errors)[:n])

    def to_json(self) -> dict[str, Any]:
        return _clean({
            **({"run": self.run} if self.run is not None else {}),
            "options": {**asdict(self.options), "tags": list(self.tags)},
            "metric": self.options.metric,
            "condition": self.condition,
            "aggregation": "pooled: WER = total errors / total reference words",
            "methods": self.methods,
            "overall": self.overall,
            "counts": {
                "enumerated": self.n_enumerated, "tried": self.n_tried, "suppressed_small": self.n_suppressed,
                "redundant": self.n_redundant, "whole": self.n_whole, "discoveries": len(self.discoveries),
            },
            "discoveries": [asdict(c) for c in self.discoveries],
            "candidates": [asdict(c) for c in sorted(self.candidates, key=lambda c: (c.p_value if c.p_value is not None else 2.0, -c.excess_errors))],
        })


# --------------------------------------------------------------------------------------------------
# Search


def discover_slices(
    frame: pd.DataFrame,
    *,
    tags: Sequence[str] | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    min_speakers: float = stats.DEFAULT_MIN_SPEAKERS,
    min_words: int = stats.DEFAULT_MIN_REF_WORDS,
    n_resamples: int = stats.DEFAULT_N_RESAMPLES,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = 0,
    fdr: float = DEFAULT_FDR,
    condition: str | None = None,
    metric: str = "wer",
) -> DiscoveryResult:
    """Try every conjunction of up to `max_depth` tag=value pairs; find slices whose WER exceeds the overall.

    `frame` is a results table (`load_run(...).frame`): utterance_id, status, errors, ref_words, a cluster
    (or speaker) column and one column per tag. With several conditions, only `condition`'s rows are used
    (default: clean). A missing tag value is the value "(not given)", a slice like any other. `tags`
    defaults to every column that is not a result column.

    Cost: one pass over the rows to aggregate (speaker, tag values) cells, then analytic intervals and
    tests from per-speaker sums for every slice at once: O(rows + cells x 2^tags), no resampling.
    """
    options = DiscoveryOptions(
        tags=None if tags is None else tuple(tags), max_depth=max_depth, min_speakers=min_speakers, min_words=min_words,
        n_resamples=n_resamples, confidence=confidence, seed=seed, fdr=fdr, condition=condition, metric=metric,
    )
    if "condition_key" in frame.columns:
        data = RunData(run_dir=Path("."), record={}, frame=frame, tag_columns=())
        rows, chosen = select_condition(data, ReportOptions(condition=condition))
    elif condition is not None:
        raise ConfigError(f"condition {condition!r} asked for, but the results have no condition_key column; drop condition=")
    else:
        rows, chosen = frame, None
    tag_names = _tag_names(rows, options.tags)
    return _discover(rows, tag_names, options, chosen)


def discover_run(run_dir: str | Path | RunData, options: DiscoveryOptions | None = None) -> DiscoveryResult:
    """`discover_slices` over a run directory's results, with the run's provenance attached."""
    options = DiscoveryOptions() if options is None else options
    data = run_dir if isinstance(run_dir, RunData) else load_run(run_dir, texts=False)  # counts, never transcripts
    rows, chosen = select_condition(data, ReportOptions(condition=options.condition))
    tags = options.tags if options.tags is not None else data.tag_columns
    tag_names = _tag_names(rows, tags, available=data.tag_columns)
    result = _discover(rows, tag_names, options, chosen)
    return DiscoveryResult(**{**_fields(result), "run": run_summary(data), "run_dir": data.run_dir})


def _discover(rows: pd.DataFrame, tag_names: tuple[str, ...], options: DiscoveryOptions, condition: str | None) -> DiscoveryResult:
    status = rows["status"] if "status" in rows.columns else pd.Series("ok", index=rows.index)
    ok_mask = (status == "ok").to_numpy()
    n_failed = int((~ok_mask).sum())
    ok = rows[ok_mask]
    if ok.empty:
        raise ConfigError(NO_ROWS.format(where=f" in condition {condition!r}" if condition else ""))
    errors = ok[options.rate.errors].to_numpy(dtype=np.float64)
    words = ok[options.rate.units].to_numpy(dtype=np.float64)
    clusters = ok["cluster"] if "cluster" in ok.columns else pd.Series(
        stats.cluster_labels(speakers=ok["speaker"] if "speaker" in ok.columns else [None] * len(ok), utterance_ids=ok["utterance_id"]), index=ok.index
    )
    # Sorted codes: resampling then does not depend on row order.
    cluster_codes, cluster_names = pd.factorize(clusters.astype(str), sort=True)
    n_clusters = len(cluster_names)

    tag_codes, tag_values = [], []
    for name in tag_names:
        codes, uniques = pd.factorize(ok[name], sort=True)
        values = [str(v) for v in uniques]
        if (codes < 0).any():
            codes = np.where(codes < 0, len(values), codes)
            values.append(NOT_GIVEN)
        tag_codes.append(codes.astype(np.int64))
        tag_values.append(values)
    cells = _cells(cluster_codes.astype(np.int64), tag_codes, errors, words)
    lattice = _enumerate(cells, tag_values, options.max_depth, n_clusters)

    # The one small rule, on every slice enumerated (effective speakers and words).
    everything = stats.cells_from_codes(
        cells.errors[lattice.member_cell], cells.words[lattice.member_cell], cells.cluster[lattice.member_cell], np.arange(n_clusters),
        lattice.member_slice, tuple(range(lattice.size)), n_utterances=cells.n_utterances[lattice.member_cell],
    )
    sizes = stats.slice_intervals(everything, options)
    suppressed = np.asarray(sizes.small).copy()
    whole = lattice.n_utterances == len(ok)
    redundant = np.zeros(lattice.size, dtype=bool)
    for index, parents in enumerate(lattice.parents):
        redundant[index] = any(lattice.n_utterances[p] == lattice.n_utterances[index] for p in parents)
    # Exclusive reasons, in this order: whole, identical to a shallower slice, small.
    redundant &= ~whole
    suppressed &= ~whole & ~redundant
    tried = ~suppressed & ~whole & ~redundant
    tried_index = np.flatnonzero(tried)

    overall_wer = float(errors.sum() / words.sum()) if words.sum() > 0 else float("nan")
    overall, tested = _tests(cells, lattice, tried_index, options, n_clusters)
    overall.update(n_utterances=int(len(ok)), n_speakers=n_clusters, n_failed=n_failed, ref_words=int(words.sum()), errors=int(errors.sum()))

    p_values = tested["p_value"]
    q_values = stats.benjamini_hochberg(p_values) if p_values.size else p_values
    significant = (q_values <= options.fdr) & (tested["gap"] > 0)
    excess = lattice.errors - overall_wer * lattice.words
    order = sorted(np.flatnonzero(significant), key=lambda i: -excess[tried_index[i]])
    rank = {i: r + 1 for r, i in enumerate(order)}

    findings = []
    for position, index in enumerate(tried_index):
        parent_wers = [lattice.wer[p] for p in lattice.parents[index]]
        findings.append(SliceFinding(
            slice=lattice.label(index, tag_names), depth=int(lattice.depth[index]),
            n_utterances=int(lattice.n_utterances[index]), n_speakers=int(lattice.n_speakers[index]),
            n_effective_speakers=round(float(sizes.n_effective_speakers[index]), 2),
            n_speakers_outside=int(lattice.n_speakers_outside[index]),
            ref_words=int(lattice.words[index]), errors=int(lattice.errors[index]), wer=float(lattice.wer[index]),
            wer_ci_low=_none(tested["wer_low"][position]), wer_ci_high=_none(tested["wer_high"][position]),
            gap_to_overall=float(tested["gap"][position]),
            gap_ci_low=_none(tested["gap_low"][position]), gap_ci_high=_none(tested["gap_high"][position]),
            ratio_to_overall=_none(lattice.wer[index] / overall_wer) if overall_wer > 0 else None,
            excess_errors=float(excess[index]),
            gap_to_worst_parent=float(lattice.wer[index] - max(parent_wers)) if parent_wers else None,
            p_value=_none(p_values[position]), q_value=_none(q_values[position]),
            significant=bool(significant[position]), rank=rank.get(position),
        ))
    return DiscoveryResult(
        options=options, tags=tag_names, condition=condition, overall=overall, candidates=tuple(findings),
        n_enumerated=int(lattice.size), n_tried=int(tried.sum()), n_suppressed=int(suppressed.sum()),
        n_redundant=int(redundant.sum()), n_whole=int(whole.sum()),
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class _Cells:
    """Rows aggregated to one cell per (speaker, full combination of tag values)."""

    cluster: np.ndarray
    tags: np.ndarray  # n_cells x n_tags value codes
    errors: np.ndarray
    words: np.ndarray
    n_utterances: np.ndarray


def _cells(cluster_codes: np.ndarray, tag_codes: list[np.ndarray], errors: np.ndarray, words: np.ndarray) -> _Cells:
    first, inverse = cell_index(cluster_codes, tag_codes)
    n_cells = first.size
    return _Cells(
        cluster=cluster_codes[first],
        tags=np.column_stack([c[first] for c in tag_codes]) if tag_codes else np.zeros((n_cells, 0), dtype=np.int64),
        errors=np.bincount(inverse, weights=errors, minlength=n_cells),
        words=np.bincount(inverse, weights=words, minlength=n_cells),
        n_utterances=np.bincount(inverse, minlength=n_cells),
    )


def cell_index(cluster_codes: np.ndarray, tag_codes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Group rows by (speaker, every tag's value code): the first row of each cell, and each row's cell.

    Cells are ordered by (speaker, tag codes). Per-speaker statistics only need cell totals, and a run
    has far fewer cells than rows (one per speaker when tags are speaker-level).
    """
    cluster_codes = np.asarray(cluster_codes, dtype=np.int64)
    radices = [int(cluster_codes.max()) + 1] + [int(c.max()) + 1 for c in tag_codes]
    if math.prod(radices) < 2**62:
        key = cluster_codes.copy()
        for codes, radix in zip(tag_codes, radices[1:]):
            key = key * radix + codes
    else:  # too many combinations for one int64 key: let pandas number the groups
        columns = pd.DataFrame({"cluster": cluster_codes, **{f"tag{i}": c for i, c in enumerate(tag_codes)}})
        key = columns.groupby(list(columns.columns), sort=True).ngroup().to_numpy()
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse


@dataclass(frozen=True, kw_only=True, eq=False)
class _Lattice:
    """Every slice enumerated: which tags (subset) and value codes define it, its totals and membership."""

    subsets: list[tuple[int, ...]]
    values: list[tuple[int, ...]]
    tag_values: list[list[str]]
    depth: np.ndarray
    errors: np.ndarray
    words: np.ndarray
    wer: np.ndarray
    n_utterances: np.ndarray
    n_speakers: np.ndarray
    n_speakers_outside: np.ndarray
    parents: list[list[int]]
    member_cell: np.ndarray  # (cell, slice) membership pairs
    member_slice: np.ndarray

    @property
    def size(self) -> int:
        return len(self.subsets)

    def label(self, index: int, tag_names: tuple[str, ...]) -> dict[str, str]:
        return {tag_names[t]: self.tag_values[t][v] for t, v in zip(self.subsets[index], self.values[index])}


def _enumerate(cells: _Cells, tag_values: list[list[str]], max_depth: int, n_clusters: int) -> _Lattice:
    n_tags = cells.tags.shape[1]
    n_cells = cells.cluster.size
    cluster_cells = np.bincount(cells.cluster, minlength=n_clusters)
    subsets, values, member_cell, member_slice = [], [], [], []
    errors, words, n_utt, n_spk, n_outside, depth = [], [], [], [], [], []
    offset = 0
    for size in range(1, min(max_depth, n_tags) + 1):
        for subset in itertools.combinations(range(n_tags), size):
            key = np.zeros(n_cells, dtype=np.int64)
            for t in subset:
                key = key * len(tag_values[t]) + cells.tags[:, t]
            unique_keys, slice_of_cell = np.unique(key, return_inverse=True)
            count = unique_keys.size
            for code in unique_keys:
                decoded = []
                for t in reversed(subset):
                    decoded.append(int(code % len(tag_values[t])))
                    code //= len(tag_values[t])
                values.append(tuple(reversed(decoded)))
                subsets.append(subset)
            errors.append(np.bincount(slice_of_cell, weights=cells.errors, minlength=count))
            words.append(np.bincount(slice_of_cell, weights=cells.words, minlength=count))
            n_utt.append(np.bincount(slice_of_cell, weights=cells.n_utterances, minlength=count).astype(np.int64))
            # Speakers per slice, and how many of them have every one of their cells inside it.
            pairs, pair_cells = np.unique(cells.cluster * count + slice_of_cell, return_counts=True)
            pair_slice, pair_cluster = pairs % count, pairs // count
            n_spk.append(np.bincount(pair_slice, minlength=count))
            inside = np.bincount(pair_slice, weights=(pair_cells == cluster_cells[pair_cluster]), minlength=count)
            n_outside.append(n_clusters - inside.astype(np.int64))
            depth.append(np.full(count, size))
            member_cell.append(np.arange(n_cells))
            member_slice.append(offset + slice_of_cell)
            offset += count
    index = {(s, v): i for i, (s, v) in enumerate(zip(subsets, values))}
    parents = []
    for s, v in zip(subsets, values):
        if len(s) < 2:
            parents.append([])
            continue
        parents.append([index[(s[:k] + s[k + 1 :], v[:k] + v[k + 1 :])] for k in range(len(s))])
    errors_arr, words_arr = np.concatenate(errors), np.concatenate(words)
    with np.errstate(divide="ignore", invalid="ignore"):
        wer = np.where(words_arr > 0, errors_arr / words_arr, np.nan)
    return _Lattice(
        subsets=subsets, values=values, tag_values=tag_values, depth=np.concatenate(depth), errors=errors_arr, words=words_arr, wer=wer,
        n_utterances=np.concatenate(n_utt), n_speakers=np.concatenate(n_spk), n_speakers_outside=np.concatenate(n_outside),
        parents=parents, member_cell=np.concatenate(member_cell), member_slice=np.concatenate(member_slice),
    )


def _tests(cells: _Cells, lattice: _Lattice, tried_index: np.ndarray, options: DiscoveryOptions, n_clusters: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Intervals and one-sided tests of every slice tried against the overall rate, from per-speaker sums.

    The slices overlap, so each slice's cells are passed as (speaker, slice) cells of their own, and the
    overall rate's per-speaker totals separately; a speaker spanning several slices counts in each.
    """
    k = tried_index.size
    position = np.full(lattice.size, -1, dtype=np.int64)
    position[tried_index] = np.arange(k)
    keep = position[lattice.member_slice] >= 0
    member = lattice.member_cell[keep]
    tried_cells = stats.cells_from_codes(
        cells.errors[member], cells.words[member], cells.cluster[member], np.arange(n_clusters),
        position[lattice.member_slice[keep]], tuple(range(k)), n_utterances=cells.n_utterances[member],
    )
    cluster_errors = np.bincount(cells.cluster, weights=cells.errors, minlength=n_clusters)
    cluster_words = np.bincount(cells.cluster, weights=cells.words, minlength=n_clusters)
    whole = stats.ratio_interval(cluster_errors=cluster_errors, cluster_words=cluster_words, confidence=options.confidence)
    overall = {"wer": whole.estimate, "wer_ci_low": _none(whole.lower), "wer_ci_high": _none(whole.upper)}
    if k == 0:
        empty = np.zeros(0)
        return overall, {"wer_low": empty, "wer_high": empty, "gap": empty, "gap_low": empty, "gap_high": empty, "p_value": empty}
    intervals = stats.slice_intervals(tried_cells, options)
    gaps = stats.gaps_to_overall(tried_cells, options, overall_errors=cluster_errors, overall_words=cluster_words)
    return overall, {
        "wer_low": np.asarray(intervals.lower), "wer_high": np.asarray(intervals.upper),
        "gap": gaps.gap, "gap_low": gaps.gap_lower, "gap_high": gaps.gap_upper, "p_value": gaps.p_worse,
    }


# --------------------------------------------------------------------------------------------------
# Validation


def _check_options(options: DiscoveryOptions) -> None:
    if isinstance(options.max_depth, bool) or options.max_depth not in range(1, MAX_DEPTH_LIMIT + 1):
        raise ConfigError(BAD_DEPTH.format(value=options.max_depth))
    if isinstance(options.fdr, bool) or not (isinstance(options.fdr, (int, float)) and 0 < options.fdr < 1):
        raise ConfigError(BAD_FDR.format(value=options.fdr))


def _tag_names(rows: pd.DataFrame, tags: Sequence[str] | None, available: Sequence[str] | None = None) -> tuple[str, ...]:
    if available is None:
        available = [c for c in rows.columns if c not in RESERVED]
    if tags is None:
        tags = available
    tags = tuple(dict.fromkeys(tags))
    if not tags:
        raise ConfigError(NO_TAGS.format(given=""))
    for tag in tags:
        if tag not in rows.columns:
            raise ConfigError(UNKNOWN_TAG.format(tag=tag, available=", ".join(map(str, available)) or "none"))
    return tags


# --------------------------------------------------------------------------------------------------
# Rendering

def columns(result: DiscoveryResult) -> tuple[tuple[str, str], ...]:
    o = result.options
    label = o.rate.label
    return (
        ("rank", "#"), ("slice", "slice"), ("n_speakers", "spk"), ("n_effective_speakers", "eff spk"), ("n_utterances", "utts"),
        ("ref_words", o.rate.unit_name), ("wer", label), ("wer_ci", f"{o.label} CI"), ("gap", "gap (pts)"), ("gap_ci", f"{o.label} CI (pts)"),
        ("ratio", "× overall"), ("excess", "excess"), ("q", "q (BH)"),
    )


# The terminal drops utterances and the ratio (both in slices.md) so the slice names fit in 120 columns.
TERMINAL_COLUMNS = ("rank", "slice", "n_speakers", "ref_words", "wer", "wer_ci", "gap", "gap_ci", "excess", "q")


def _display(finding: SliceFinding) -> dict[str, str]:
    return {
        "rank": str(finding.rank) if finding.rank is not None else DASH,
        "slice": finding.label, "n_speakers": str(finding.n_speakers), "n_effective_speakers": f"{finding.n_effective_speakers:.1f}",
        "n_utterances": str(finding.n_utterances), "ref_words": str(finding.ref_words), "wer": fmt.pct(finding.wer),
        "wer_ci": fmt.interval(finding.wer_ci_low, finding.wer_ci_high),
        "gap": fmt.points(finding.gap_to_overall, unit=False),
        "gap_ci": fmt.interval(finding.gap_ci_low, finding.gap_ci_high, kind="difference"),
        "ratio": fmt.ratio(finding.ratio_to_overall),
        "excess": f"{finding.excess_errors:+.0f}",
        "q": fmt.p_value(finding.q_value),
    }


def _summary(result: DiscoveryResult) -> str:
    o = result.options
    overall = result.overall
    label = o.rate.label
    return (
        f"Overall {label} {fmt.pct(overall['wer'])} over {overall['n_utterances']} utterances from {overall['n_speakers']} speakers. "
        f"Searched {result.n_enumerated} slices (up to {o.max_depth} of the tags {', '.join(result.tags)}): "
        f"{result.n_suppressed} suppressed as small (< {o.min_speakers:g} effective speakers or < {o.min_words} {o.rate.unit_name}), "
        f"{result.n_redundant} identical to a slice with fewer tags, {result.n_whole} covering every row; "
        f"{result.n_tried} tried. {len(result.discoveries)} have a {label} above overall at a false discovery rate of {o.fdr:.0%} "
        f"(Benjamini–Hochberg over all {result.n_tried} tried), ranked by excess errors."
    )


def _footnote(result: DiscoveryResult) -> str:
    o = result.options
    label = o.rate.label
    return (
        f"gap: {label}(slice) − {label}(overall) in percentage points. Excess = errors − overall {label} × reference {o.rate.unit_name}. "
        f"CIs: {o.label} t intervals clustered by speaker (CR3, Bell–McCaffrey df). p: one-sided t test of {label}(slice) > {label}(overall) "
        "with the same clustered standard error. A slice of several tags may only restate its worst one-tag parent: compare the parents' rows."
    )


def render_discovery_markdown(result: DiscoveryResult) -> str:
    title = result.run_dir.name if result.run_dir is not None else "results"
    lines = [f"# Worst slices: {escape_markdown(title)}", ""]
    if result.run is not None and (notice := incomplete_notice(result.run)):
        lines += [f"> **Warning:** {escape_markdown(notice)}", ""]
    if result.run is not None:
        run = result.run
        lines += [
            f"- Backend: {escape_markdown((run.get('backend') or {}).get('name'))} {escape_markdown(json.dumps((run.get('backend') or {}).get('options') or {}, ensure_ascii=False))}",
            f"- Normaliser: {escape_markdown((run.get('normalizer') or {}).get('name'))}",
        ]
    if result.condition:
        lines.append(f"- Condition: {escape_markdown(result.condition)}")
    lines += ["", escape_markdown(_summary(result)), ""]
    shown = result.discoveries
    if not shown:
        lines += [f"No slice is significantly worse than overall. The {N_WORST_SHOWN} with the most excess errors, for reference (not significant):", ""]
        shown = result.worst()
    cols = columns(result)
    lines += ["| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" if k == "slice" else "---:" for k, _ in cols) + "|"]
    for finding in shown:
        row = _display(finding)
        lines.append("| " + " | ".join(escape_markdown(row[k]) for k, _ in cols) + " |")
    lines += ["", escape_markdown(_footnote(result))]
    return "\n".join(lines) + "\n"


def print_discovery(result: DiscoveryResult, console: Console) -> None:
    shown = result.discoveries
    title = "Slices worse than overall (FDR-controlled), by excess errors"
    if not shown:
        shown = result.worst()
        title = f"No significant slice; the {len(shown)} with the most excess errors (not significant)"
    table = Table(title=title, title_justify="left")
    headers = dict(columns(result))
    for key in TERMINAL_COLUMNS:
        table.add_column(headers[key], justify="left" if key == "slice" else "right", no_wrap=key != "slice", min_width=24 if key == "slice" else None)
    for finding in shown:
        row = _display(finding)
        table.add_row(*(escape_terminal(row[k]) for k in TERMINAL_COLUMNS), style=None if finding.significant else "dim")
    if result.run is not None and (notice := incomplete_notice(result.run)):
        console.print(escape_terminal(notice, style="bold yellow"), soft_wrap=True)
    console.print(escape_terminal(_summary(result)))
    console.print(table)
    console.print(_footnote(result), highlight=False)


def write_discovery(result: DiscoveryResult, out_dir: str | Path) -> list[Path]:
    """Write slices.json and slices.md into `out_dir` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out_dir / JSON_FILE, out_dir / MARKDOWN_FILE
    write_json(json_path, result.to_json())
    markdown_path.write_text(render_discovery_markdown(result), encoding="utf-8")
    return [json_path, markdown_path]


# --------------------------------------------------------------------------------------------------
# Helpers


def _none(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _fields(result: DiscoveryResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in result.__dataclass_fields__}


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and inf become None, numpy scalars become Python numbers, paths become strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value
