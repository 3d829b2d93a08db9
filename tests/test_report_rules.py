"""The report's guarantees, each tested directly on a run built through the real pipeline (manifest, replay
backend, scoring, results store, report): rows with no label and small slices are never ranked or an
anchor, report.csv defuses spreadsheet formulas, and inline SVG never carries script.

Every expected number is counted here from the planted errors, not read back from the code under test.
Each test was checked to fail with the guarantee removed (the rule bypassed, escape_csv a no-op, the SVG
filter deleted).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from harness.backends import load_backend
from harness.manifest import load_manifest
from harness.report import ReportOptions, build_report, write_report
from harness.report.html import inline_svg
from harness.escaping import FORMULA_PREFIXES, escape_csv
from harness.report.slices import NOT_GIVEN
from harness.runner import run_evaluation

WORDS = 10
SENTENCE = " ".join(f"w{i}" for i in range(WORDS))


def group(prefix, tags, *, speakers, utterances=3, words=WORDS, errors=1, heavy=None):
    """Records for `speakers` speakers with `utterances` each of `words` words and `errors` substitutions.

    `heavy=(utterances, errors)` gives the first speaker that many utterances instead: one voice dominating.
    Returns (records, hypotheses by id).
    """
    records, hypotheses = [], {}
    for s in range(speakers):
        count, wrong = heavy if heavy and s == 0 else (utterances, errors)
        for u in range(count):
            uid = f"{prefix}-{s}-{u}"
            reference = [f"w{i}" for i in range(words)]
            hypothesis = ["x"] * wrong + reference[wrong:]
            records.append({"id": uid, "text": " ".join(reference), "speaker": f"{prefix}{s}", "tags": tags})
            hypotheses[uid] = " ".join(hypothesis)
    return records, hypotheses


def replay_run(tmp_path, groups):
    records, hypotheses = [], {}
    for recs, hyps in groups:
        records += recs
        hypotheses.update(hyps)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    replayed = tmp_path / "hypotheses.jsonl"
    replayed.write_text("".join(json.dumps({"id": k, "hypothesis": v}) + "\n" for k, v in hypotheses.items()), encoding="utf-8")
    options = {"hypotheses": str(replayed)}
    run_evaluation(load_manifest(manifest, require_audio=False), load_backend("replay", options), out_dir=tmp_path / "run", normalizer="basic", backend_options=options)
    return tmp_path / "run"


def rows_of(report, dimension):
    return {row["by"][dimension]: row for row in report.table.slices if row["dimension"] == dimension}


def disparity_of(report, dimension):
    return next(d for d in report.table.disparities if d.dimension == (dimension,))


# --------------------------------------------------------------------------------------------------
# Rows with no label are not a group of people: never best, worst, or the anchor of a gap.


@pytest.fixture(scope="module")
def unlabelled_run(tmp_path_factory):
    """Twelve speakers x 3 utterances x 10 words per group; one error in 10 words unless said otherwise.

    accent: north 1/10, south (south-a 2/10 + south-b 5/10), and no accent at all for the 0/10 group: the
    unlabelled rows have the LOWEST rate. region: east (north + quiet), west (south-a), and no region for
    south-b: there the unlabelled rows have the HIGHEST rate.
    """
    tmp_path = tmp_path_factory.mktemp("unlabelled")
    return replay_run(tmp_path, [
        group("north", {"accent": "north", "region": "east"}, speakers=12, errors=1),
        group("southa", {"accent": "south", "region": "west"}, speakers=12, errors=2),
        group("southb", {"accent": "south"}, speakers=12, errors=5),
        group("quiet", {"region": "east"}, speakers=12, errors=0),
    ])


def test_unlabelled_rows_are_never_best_and_never_anchor_the_gap(unlabelled_run):
    report = build_report(unlabelled_run, ReportOptions(by=("accent", "region"), n_resamples=200))
    rows = rows_of(report, "accent")
    assert set(rows) == {"north", "south", NOT_GIVEN}
    assert rows[NOT_GIVEN]["wer"] == 0 and not rows[NOT_GIVEN]["small"]  # the lowest rate of all, and large
    found = disparity_of(report, "accent")
    assert found.best == {"accent": "north"} and found.worst == {"accent": "south"} and found.slices_compared == 2
    assert found.equal_wer_test["n_slices"] == 2
    # Gaps are measured from north (1/10), not from the unlabelled 0/10.
    assert rows["north"]["gap_to_best"] == 0
    assert rows["south"]["gap_to_best"] == pytest.approx((2 + 5) * 36 / 720 - 0.1)
    assert rows["south"]["ratio_to_best"] == pytest.approx(0.35 / 0.1)
    assert rows["south"]["gap_to_best_ci_low"] is not None
    for name in ("gap_to_best", "gap_to_best_ci_low", "gap_to_best_ci_high", "ratio_to_best"):
        assert rows[NOT_GIVEN][name] is None
    assert found.worst_minus_best["estimate"] == pytest.approx(0.25)
    assert found.worst_to_best_ratio["estimate"] == pytest.approx(3.5)


def test_unlabelled_rows_are_never_worst(unlabelled_run):
    report = build_report(unlabelled_run, ReportOptions(by=("accent", "region"), n_resamples=200))
    rows = rows_of(report, "region")
    assert rows[NOT_GIVEN]["wer"] == pytest.approx(0.5) and not rows[NOT_GIVEN]["small"]  # the highest rate
    found = disparity_of(report, "region")
    assert found.worst == {"region": "west"} and found.best == {"region": "east"} and found.slices_compared == 2
    assert rows["east"]["gap_to_best"] == 0 and rows["west"]["gap_to_best"] == pytest.approx(0.2 - 0.05)
    assert found.worst_minus_best["estimate"] == pytest.approx(0.15)
    assert rows[NOT_GIVEN]["gap_to_best"] is None and rows[NOT_GIVEN]["ratio_to_best"] is None
    # The unlabelled rows still have their own rate and interval: they are reported, only not ranked.
    assert rows[NOT_GIVEN]["wer_ci_low"] <= 0.5 <= rows[NOT_GIVEN]["wer_ci_high"]


# --------------------------------------------------------------------------------------------------
# A small slice (few effective speakers, or under 100 words) is never ranked.


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """a: 1/10, b: 3/10 (12 speakers, 360 words each: not small). few-words: 12 speakers of one 8-word
    utterance with no error (96 words < 100) would be best. one-voice: 10 speakers, but one holds 190
    of the 280 words (effective speakers (280^2) / (190^2 + 9 * 10^2) = 2.1 < 8) at 9/10: would be worst.
    """
    tmp_path = tmp_path_factory.mktemp("small")
    return replay_run(tmp_path, [
        group("a", {"accent": "a"}, speakers=12, errors=1),
        group("b", {"accent": "b"}, speakers=12, errors=3),
        group("fw", {"accent": "few-words"}, speakers=12, utterances=1, words=8, errors=0),
        group("ov", {"accent": "one-voice"}, speakers=10, utterances=1, errors=9, heavy=(19, 9)),
    ])


def test_small_slices_are_never_ranked_or_an_anchor(small_run):
    report = build_report(small_run, ReportOptions(by=("accent",), n_resamples=200))
    rows = rows_of(report, "accent")
    few, one = rows["few-words"], rows["one-voice"]
    assert few["n_speakers"] == 12 and few["ref_words"] == 96 and few["wer"] == 0
    assert one["n_speakers"] == 10 and one["ref_words"] == 280 and one["wer"] == pytest.approx(0.9)
    assert one["n_effective_speakers"] == pytest.approx(round(280**2 / (190**2 + 9 * 10**2), 2))
    assert few["small"] and one["small"] and not rows["a"]["small"] and not rows["b"]["small"]
    found = disparity_of(report, "accent")
    assert found.best == {"accent": "a"} and found.worst == {"accent": "b"} and found.slices_compared == 2
    assert found.equal_wer_test["n_slices"] == 2 and found.equal_wer_test["n_speakers"] == 24
    assert rows["a"]["gap_to_best"] == 0 and rows["b"]["gap_to_best"] == pytest.approx(0.2)
    assert found.worst_minus_best["estimate"] == pytest.approx(0.2) and found.worst_to_best_ratio["estimate"] == pytest.approx(3.0)
    for row in (few, one):
        for name in ("gap_to_best", "gap_to_best_ci_low", "ratio_to_best", "wer_ci_low", "wer_ci_high", "gap_to_overall_ci_low"):
            assert row[name] is None, name
        assert row["gap_to_overall"] is not None  # the point estimate is shown; only its interval and rank are withheld


def test_small_rule_follows_the_options(small_run):
    """The same rule with the minimums lowered: the 96-word slice becomes eligible and is then the best."""
    report = build_report(small_run, ReportOptions(by=("accent",), min_words=90, n_resamples=200))
    rows = rows_of(report, "accent")
    assert not rows["few-words"]["small"] and rows["one-voice"]["small"]
    found = disparity_of(report, "accent")
    assert found.best == {"accent": "few-words"} and found.slices_compared == 3
    assert rows["a"]["gap_to_best"] == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------------
# report.csv: no cell a spreadsheet would run as a formula.


FORMULA_TAG = "=HYPERLINK(\"http://example.invalid\",\"x\")"


def test_report_csv_defuses_every_formula_cell(tmp_path):
    run = replay_run(tmp_path, [
        group("a", {FORMULA_TAG: "+1+1", "@who": "-2"}, speakers=2, errors=1),
        group("b", {FORMULA_TAG: "@SUM(A1)", "@who": "=1"}, speakers=2, errors=0),
    ])
    report = build_report(run, ReportOptions(by=(FORMULA_TAG, "@who"), min_speakers=1, min_words=1, n_resamples=200))
    write_report(report, run, formats=["csv"])
    text = (run / "report.csv").read_text(encoding="utf-8")
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    dangerous = [cell for cell in cells if cell.startswith(FORMULA_PREFIXES) and not _is_number(cell)]
    assert dangerous == []
    # The tag names head the dimension and slice cells: defused by one leading quote, otherwise intact.
    assert "'" + FORMULA_TAG in cells and "'@who" in cells
    assert f"'{FORMULA_TAG}=+1+1" in cells and "'@who=-2" in cells and "'@who==1" in cells
    # Numbers stay numbers (a negative gap is not a formula).
    assert any(_is_number(cell) and cell.startswith("-") for cell in cells)


def test_report_csv_holds_every_row_of_the_table(unlabelled_run):
    """One CSV row per table row, overall first, every field the table's value; crossed slices joined by ";"."""
    report = build_report(unlabelled_run, ReportOptions(by=("accent", "region"), cross=True, n_resamples=200))
    write_report(report, unlabelled_run, formats=["csv"])
    with open(unlabelled_run / "report.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = [{**report.table.overall, "dimension": "overall"}, *report.table.slices]
    assert len(rows) == len(table) and rows[0]["dimension"] == "overall" and rows[0]["slice"] == "overall"
    assert "accent=south;region=west" in {row["slice"] for row in rows}
    for written, row in zip(rows, table, strict=True):
        by = row.get("by") or {}
        assert written["slice"] == (";".join(f"{k}={v}" for k, v in by.items()) if by else "overall")
        for name, cell in written.items():
            if name != "slice":
                value = row.get(name)
                assert cell == ("" if value is None else str(value)), name
    assert float(rows[0]["wer"]) == pytest.approx((36 + 72 + 180) / 1440)


def test_report_csv_is_utf8_whatever_the_locale(tmp_path):
    """Written in an ASCII locale, a name with an accent or in another script still reaches report.csv as UTF-8.

    The other interpreter only writes the CSV of a report built here (an interpreter that also built
    the report took four times as long, for every mutant of the mutation run that reaches the report)."""
    import os
    import pickle
    import subprocess
    import sys
    from pathlib import Path

    from harness.report.render import write_csv

    run = replay_run(tmp_path, [
        group("a", {"accent": "Fernández"}, speakers=2, errors=1),
        group("b", {"accent": "中文"}, speakers=2, errors=0),
    ])
    report = build_report(run, ReportOptions(by=("accent",), n_resamples=200))
    (tmp_path / "report.pickle").write_bytes(pickle.dumps(report))
    script = "import pickle, sys; from pathlib import Path; from harness.report.render import write_csv; write_csv(pickle.loads(Path(sys.argv[1]).read_bytes()), Path(sys.argv[2]))"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "report.pickle"), str(tmp_path / "ascii.csv")], env=env, capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "ascii.csv").read_bytes().decode("utf-8")
    assert "accent=Fernández" in text and "accent=中文" in text
    # The same bytes as written here, in this process's locale.
    write_csv(report, Path(tmp_path / "here.csv"))
    assert (tmp_path / "here.csv").read_bytes() == (tmp_path / "ascii.csv").read_bytes()


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_escape_csv_quotes_each_formula_prefix_and_leaves_the_rest(prefix):
    assert escape_csv(prefix + "cmd") == "'" + prefix + "cmd"
    assert escape_csv("cmd" + prefix) == "cmd" + prefix
    assert escape_csv(-0.25) == -0.25 and escape_csv(None) is None and escape_csv(True) is True


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------
# Inline SVG: matplotlib output is inlined, but never with script in it.


def matplotlib_svg(title: str = "WER against SNR") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3, 2))
    axes.plot([0, 5, 10], [0.4, 0.2, 0.1], label="<script>alert(1)</script>")
    axes.set_title(title)
    axes.legend()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    return buffer.getvalue()


def _has_script(markup: str) -> bool:
    return bool(re.search(r"<script|<foreignObject|\son[a-z]+\s*=", markup, flags=re.I))


def test_clean_matplotlib_svg_is_inlined_with_its_text_escaped():
    svg = matplotlib_svg()
    inlined = inline_svg(svg)
    assert inlined.startswith("<svg") and "</svg>" in inlined and "<path" in inlined
    assert "<?xml" not in inlined and "<!DOCTYPE" not in inlined and "<metadata" not in inlined
    assert not _has_script(inlined)  # the label "<script>..." stays escaped text


@pytest.mark.parametrize("inject", [
    lambda svg: svg.replace("</svg>", "<script>alert(1)</script></svg>"),
    lambda svg: svg.replace("</svg>", "<SCRIPT type=\"text/javascript\">alert(1)</SCRIPT></svg>"),
    lambda svg: svg.replace("<svg ", "<svg onload=\"alert(1)\" ", 1),
    lambda svg: re.sub(r"<path ", "<path ONMOUSEOVER = 'alert(1)' ", svg, count=1),
    lambda svg: svg.replace("</svg>", "<foreignObject><body xmlns=\"http://www.w3.org/1999/xhtml\"><iframe src=\"javascript:alert(1)\"/></body></foreignObject></svg>"),
], ids=["script", "upper-case-script", "onload", "onmouseover", "foreignObject"])
def test_script_in_matplotlib_svg_is_dropped(inject):
    tainted = inject(matplotlib_svg())
    assert _has_script(tainted)  # the injection is really there
    assert not _has_script(inline_svg(tainted))


# --------------------------------------------------------------------------------------------------
# The slice table, field by field, against a computation written here from the definitions.


def results_frame(seed=3):
    """Results as the report reads them: accent a (12 speakers), b (10), c (3: small), none (9); gender per
    speaker, missing for some; a few failed rows and a few references that normalised to no words."""
    rng = np.random.default_rng(seed)
    rows = []
    groups = [("a", 12, 0.10), ("b", 10, 0.25), ("c", 3, 0.05), (None, 9, 0.30)]
    speaker = 0
    for accent, n, rate in groups:
        for _ in range(n):
            gender = [None, "f", "m"][speaker % 3] if speaker % 4 else "f"
            for u in range(int(rng.integers(2, 5))):
                words = int(rng.integers(5, 21))
                subs, dels = int(rng.binomial(words, rate * 0.6)), int(rng.binomial(words, rate * 0.3))
                subs = min(subs, words)
                dels = min(dels, words - subs)
                ins = int(rng.binomial(3, rate))
                chars = 5 * words
                rows.append(dict(
                    utterance_id=f"u{len(rows)}", status="ok", cluster=f"s{speaker}", accent=accent, gender=gender,
                    ref_words=words, substitutions=subs, deletions=dels, insertions=ins, hits=words - subs - dels, errors=subs + dels + ins,
                    ref_chars=chars, char_errors=int(rng.binomial(chars, rate * 0.5)),
                ))
            speaker += 1
    for i in (4, 40, 77):  # failed: no counts
        rows[i] = {**rows[i], "status": "failed", **{k: 0 for k in ("ref_words", "substitutions", "deletions", "insertions", "hits", "errors", "ref_chars", "char_errors")}}
    for i in (10, 60):  # a reference that normalised to no words: its insertions still count
        rows[i] = {**rows[i], "ref_words": 0, "substitutions": 0, "deletions": 0, "hits": 0, "insertions": 2, "errors": 2, "ref_chars": 0, "char_errors": 2}
    frame = pd.DataFrame(rows)
    for name in ("accent", "gender"):
        frame[name] = frame[name].astype("string")
    return frame


def reference_log_bounds(errors, words, confidence):
    from tests.test_stats_values import log_interval

    return log_interval(errors, words, confidence)


def expected_table(frame, dims, options, *, errors="errors", units="ref_words"):
    with np.errstate(all="ignore"):  # slices of one speaker have no spread: NaN, as in the report
        return _expected_table(frame, dims, options, errors=errors, units=units)


def _expected_table(frame, dims, options, *, errors, units):
    from tests.test_stats_values import gaps_by_hand

    ok = frame[frame["status"] == "ok"]
    totals = {c: (g[errors].sum(), g[units].sum()) for c, g in ok.groupby("cluster")}
    rows, disparities = [], []
    for dim in dims:
        labels = frame[list(dim)].astype(object).where(frame[list(dim)].notna(), NOT_GIVEN).astype(str)
        key = labels.apply(tuple, axis=1)
        info = {}
        for k in sorted(set(key)):
            part = frame[key == k]
            good = part[part["status"] == "ok"]
            per_speaker = good.groupby("cluster")[[errors, units]].sum()
            e, w = per_speaker[errors].to_numpy(float), per_speaker[units].to_numpy(float)
            effective = w.sum() ** 2 / (w**2).sum() if (w**2).sum() else 0.0
            small = effective < options.min_speakers - 1e-9 or w.sum() < options.min_words
            info[k] = dict(part=part, good=good, e=e, w=w, cells=[(c, per_speaker.loc[c, errors], per_speaker.loc[c, units]) for c in per_speaker.index],
                           effective=effective, small=small, rate=e.sum() / w.sum() if w.sum() else float("nan"), speakers=len(w))
        eligible = [k for k, v in info.items() if NOT_GIVEN not in k and not v["small"] and v["speakers"] >= 2]
        level = options.confidence ** (1 / max(len(eligible), 1))
        bounds = {k: reference_log_bounds(info[k]["e"], info[k]["w"], level) for k in eligible}
        best = min(eligible, key=lambda k: info[k]["rate"]) if len(eligible) >= 2 else None
        gaps = gaps_by_hand({k: v["cells"] for k, v in info.items()}, totals, options.confidence)
        for k, v in info.items():
            good, part = v["good"], v["part"]
            sums = {name: int(good[name].sum()) for name in ("errors", "substitutions", "deletions", "insertions", "ref_words", "ref_chars", "char_errors")}
            row = dict(
                dimension="×".join(dim), by=dict(zip(dim, k)), n_utterances=len(good), n_speakers=good["cluster"].nunique(),
                n_failed=int((part["status"] != "ok").sum()), n_empty_reference=int((good["ref_words"] == 0).sum()), **sums,
                wer=sums["errors"] / sums["ref_words"], substitution_rate=sums["substitutions"] / sums["ref_words"],
                deletion_rate=sums["deletions"] / sums["ref_words"], insertion_rate=sums["insertions"] / sums["ref_words"],
                cer=sums["char_errors"] / sums["ref_chars"],
                mean_utterance_wer=float(np.mean([r.errors / r.ref_words for r in good.itertuples() if r.ref_words > 0])),
                n_effective_speakers=round(v["effective"], 2), small=v["small"],
            )
            name = options.metric
            low, high = reference_log_bounds(v["e"], v["w"], options.confidence) if not v["small"] else (None, None)
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
            ranked = best is not None and k in eligible
            lows, highs = [bounds[j][0] for j in eligible], [bounds[j][1] for j in eligible]
            row["gap_to_best"] = v["rate"] - info[best]["rate"] if ranked else None
            row["gap_to_best_ci_low"] = max(0.0, bounds[k][0] - min(highs)) if ranked else None
            row["gap_to_best_ci_high"] = bounds[k][1] - min(lows) if ranked else None
            row["ratio_to_best"] = v["rate"] / info[best]["rate"] if ranked else None
            row["ratio_to_best_ci_low"] = max(1.0, bounds[k][0] / min(highs)) if ranked else None
            row["ratio_to_best_ci_high"] = bounds[k][1] / min(lows) if ranked else None
            g = gaps[k]
            row["gap_to_overall"], row["ratio_to_overall"] = g["gap"], g["ratio"]
            for field in ("gap_to_overall", "ratio_to_overall"):
                prefix = field.split("_")[0]
                row[f"{field}_ci_low"] = None if v["small"] else g[f"{prefix}_lower"]
                row[f"{field}_ci_high"] = None if v["small"] else g[f"{prefix}_upper"]
            rows.append(row)
        if best is not None:
            worst = max(eligible, key=lambda k: info[k]["rate"])
            lows, highs = [bounds[j][0] for j in eligible], [bounds[j][1] for j in eligible]
            disparities.append(dict(
                dimension=dim, worst=dict(zip(dim, worst)), best=dict(zip(dim, best)), slices_compared=len(eligible), simultaneous_confidence=level,
                worst_minus_best=dict(estimate=info[worst]["rate"] - info[best]["rate"], ci_low=max(0.0, max(lows) - min(highs)), ci_high=max(highs) - min(lows)),
                worst_to_best_ratio=dict(estimate=info[worst]["rate"] / info[best]["rate"], ci_low=max(1.0, max(lows) / min(highs)), ci_high=max(highs) / min(lows)),
                eligible=eligible,
            ))
        else:
            disparities.append(dict(dimension=dim, worst=None, best=None, slices_compared=len(eligible), simultaneous_confidence=None))
    return rows, disparities


def assert_same(got, expected, where):
    if expected is None or isinstance(expected, (str, bool, dict, tuple)):
        assert got == expected, where
    else:
        assert got == pytest.approx(expected, rel=1e-9), where


@pytest.mark.parametrize("metric", ["wer", "cer"])
def test_slice_table_field_by_field(metric):
    from harness.report.slices import SliceOptions, build_slice_table, dimensions

    frame = results_frame()
    options = SliceOptions(by=("accent", "gender"), cross=True, metric=metric, n_resamples=200, min_speakers=4)
    assert dimensions(options) == [("accent",), ("gender",), ("accent", "gender")]
    table = build_slice_table(frame, options)
    errors, units = ("errors", "ref_words") if metric == "wer" else ("char_errors", "ref_chars")
    rows, disparities = expected_table(frame, dimensions(options), options, errors=errors, units=units)
    assert table.metric == metric
    assert [(r["dimension"], r["by"]) for r in table.slices] == [(r["dimension"], r["by"]) for r in rows]
    for got, expected in zip(table.slices, rows, strict=True):
        assert set(expected) <= set(got)
        for name, value in expected.items():
            assert_same(got[name], value, (expected["by"], name))
    # The overall row: every ok row, one slice.
    ok = frame[frame["status"] == "ok"]
    overall = table.overall
    assert (overall["n_utterances"], overall["n_failed"], overall["n_empty_reference"]) == (len(ok), 3, 2)
    assert overall["errors"] == ok["errors"].sum() and overall["wer"] == pytest.approx(ok["errors"].sum() / ok["ref_words"].sum())
    per_speaker = ok.groupby("cluster")[[errors, units]].sum()
    low, high = reference_log_bounds(per_speaker[errors], per_speaker[units], 0.95)
    assert overall[f"{metric}_ci_low"] == pytest.approx(low, rel=1e-9) and overall[f"{metric}_ci_high"] == pytest.approx(high, rel=1e-9)
    assert overall["small"] is False and overall["n_effective_speakers"] == pytest.approx(round(per_speaker[units].sum() ** 2 / (per_speaker[units] ** 2).sum(), 2))
    # Disparities: the ranked slices, their range, the test of equal rates and its Holm adjustment over the dimensions.
    assert len(table.disparities) == len(disparities)
    raw = []
    for got, expected in zip(table.disparities, disparities, strict=True):
        assert got.dimension == expected["dimension"] and got.slices_compared == expected["slices_compared"]
        assert got.worst == expected["worst"] and got.best == expected["best"]
        if expected["best"] is None:
            assert got.equal_wer_test is None and got.simultaneous_confidence is None and got.disparity_detected is False
            raw.append(np.nan)
            continue
        assert got.simultaneous_confidence == pytest.approx(expected["simultaneous_confidence"])
        for name in ("worst_minus_best", "worst_to_best_ratio"):
            for part in ("estimate", "ci_low", "ci_high"):
                assert getattr(got, name)[part] == pytest.approx(expected[name][part], rel=1e-9), (name, part)
        test = got.equal_wer_test
        assert test["n_slices"] == len(expected["eligible"])
        assert set(test) == {"method", "statistic", "p_value", "p_value_holm", "n_resamples", "monte_carlo_se", "n_slices", "n_speakers"}
        assert test["n_speakers"] == ok[ok[list(got.dimension)].astype(object).where(ok[list(got.dimension)].notna(), NOT_GIVEN).astype(str).apply(tuple, axis=1).isin(expected["eligible"])]["cluster"].nunique()
        assert test["n_resamples"] >= 2000 * len(disparities) or test["method"].startswith("exact")
        raw.append(test["p_value"])
    finite = sorted((p, i) for i, p in enumerate(raw) if np.isfinite(p))
    holm, running = {}, 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        holm[i] = running
    for i, got in enumerate(table.disparities):
        if got.equal_wer_test is not None:
            assert got.equal_wer_test["p_value_holm"] == pytest.approx(holm[i])
            assert got.disparity_detected == (holm[i] < 0.05)


def test_slice_table_detects_a_disparity_only_when_the_adjusted_test_rejects():
    from harness.report.slices import SliceOptions, build_slice_table

    frame = results_frame()
    table = build_slice_table(frame, SliceOptions(by=("accent",), min_speakers=4, n_resamples=500))
    found = table.disparities[0]
    assert found.equal_wer_test["p_value"] < 0.05 and found.disparity_detected is True  # a 10% against b 25%
    assert found.equal_wer_test["p_value_holm"] == found.equal_wer_test["p_value"]  # one dimension: nothing to adjust


def test_disparity_is_detected_strictly_below_alpha_after_holm():
    from harness.report.slices import SliceOptions, _dimension_disparities
    from harness.stats import Disparity, EqualityTest, Interval, SliceMeasure

    def found(p_value):
        interval = Interval(estimate=0.1, lower=0.0, upper=0.2, confidence=0.75, method="m")
        measure = SliceMeasure(slices=("x", "y"), estimate=np.zeros(2), lower=np.zeros(2), upper=np.zeros(2))
        test = None if p_value is None else EqualityTest(method="m", statistic=3.0, p_value=p_value, n_resamples=100, monte_carlo_se=None, n_slices=2, n_speakers=20)
        return Disparity(
            slices_compared=("x", "y"), worst_slice="y", best_slice="x", worst_to_best_ratio=interval, worst_minus_best=interval,
            gap_to_best=measure, ratio_to_best=measure, equal_wer_test=test, simultaneous_confidence=0.9, alpha=0.25,
        )

    options = SliceOptions(confidence=0.75)  # alpha exactly 0.25
    at, below, none = _dimension_disparities([(("a",), found(0.25)), (("b",), found(0.1)), (("c",), found(None))], options)
    # Holm over the two tests: 0.1 * 2 = 0.2, then max(0.2, 0.25) = 0.25.
    assert (below.equal_wer_test["p_value_holm"], at.equal_wer_test["p_value_holm"]) == (pytest.approx(0.2), pytest.approx(0.25))
    assert below.disparity_detected is True and at.disparity_detected is False
    assert none.equal_wer_test is None and none.disparity_detected is False and none.simultaneous_confidence is None
    assert at.simultaneous_confidence == 0.9 and at.worst == {"a": "y"} and at.best == {"a": "x"} and at.slices_compared == 2
    assert at.worst_minus_best == {"estimate": 0.1, "ci_low": 0.0, "ci_high": 0.2}
    assert at.equal_wer_test == {
        "method": "m", "statistic": 3.0, "p_value": 0.25, "p_value_holm": pytest.approx(0.25), "n_resamples": 100, "monte_carlo_se": None,
        "n_slices": 2, "n_speakers": 20,
    }


def test_slice_table_labels_snr_and_handles_no_scored_rows():
    from harness.report.slices import SliceOptions, build_slice_table

    frame = results_frame()
    frame["snr_db"] = np.where(np.arange(len(frame)) % 3 == 0, np.nan, np.where(np.arange(len(frame)) % 3 == 1, 5.0, 12.5))
    table = build_slice_table(frame, SliceOptions(by=("snr_db",), min_speakers=1, min_words=1, n_resamples=200))
    assert [row["by"]["snr_db"] for row in table.slices] == ["12.5 dB", "5 dB", "clean"]
    assert sum(row["n_utterances"] for row in table.slices) == (frame["status"] == "ok").sum()
    failed = frame.assign(status="failed")
    empty = build_slice_table(failed, SliceOptions(by=("accent",), n_resamples=200))
    assert empty.overall["n_utterances"] == 0 and empty.overall["n_failed"] == len(frame) and empty.overall["mean_utterance_wer"] is None
    assert (empty.overall["n_effective_speakers"], empty.overall["small"], empty.overall["wer_ci_low"], empty.overall["wer_ci_high"]) == (0.0, True, None, None)
    assert empty.disparities == [] and empty.overall["wer"] is None
    for row in empty.slices:
        assert (row["small"], row["n_effective_speakers"], row["wer_ci_low"], row["gap_to_best"], row["gap_to_overall"]) == (True, 0.0, None, None, None)
        assert row["n_failed"] == row["n_utterances"] + row["n_failed"] > 0


def test_unknown_metric_is_refused_with_the_choices():
    from harness.report.slices import SliceOptions
    from harness.stats import StatsInputError

    with pytest.raises(StatsInputError) as raised:
        SliceOptions(metric="ter")
    assert str(raised.value) == "metric 'ter' is not one of wer, cer; use wer (word error rate) or cer (character error rate, for scripts written without spaces)"
