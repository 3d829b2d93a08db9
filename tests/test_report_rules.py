"""The report's guarantees, each tested directly on a run built through the real pipeline (manifest, replay
backend, scoring, results store, report): rows with no label and small slices are never ranked or an
anchor, report.csv defuses spreadsheet formulas, and inline SVG never carries script.

Every expected number is counted here from the planted errors, not read back from the code under test.
Each test was checked to fail with the guarantee removed (the rule bypassed, csv_safe a no-op, the SVG
filter deleted).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest

from harness.backends import load_backend
from harness.manifest import load_manifest
from harness.report import ReportOptions, build_report, write_report
from harness.report.html import inline_svg
from harness.report.render import FORMULA_PREFIXES, csv_safe
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
    """Written in an ASCII locale, a name with an accent or in another script still reaches report.csv as UTF-8."""
    import subprocess
    import sys

    run = replay_run(tmp_path, [
        group("a", {"accent": "Fernández"}, speakers=2, errors=1),
        group("b", {"accent": "中文"}, speakers=2, errors=0),
    ])
    script = (
        "import sys; from harness.report import ReportOptions, build_report, write_report; "
        "r = build_report(sys.argv[1], ReportOptions(by=('accent',), n_resamples=200)); write_report(r, sys.argv[1], formats=['csv'])"
    )
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run([sys.executable, "-c", script, str(run)], env=env, capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    text = (run / "report.csv").read_bytes().decode("utf-8")
    assert "accent=Fernández" in text and "accent=中文" in text


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_csv_safe_quotes_each_formula_prefix_and_leaves_the_rest(prefix):
    assert csv_safe(prefix + "cmd") == "'" + prefix + "cmd"
    assert csv_safe("cmd" + prefix) == "cmd" + prefix
    assert csv_safe(-0.25) == -0.25 and csv_safe(None) is None and csv_safe(True) is True


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
