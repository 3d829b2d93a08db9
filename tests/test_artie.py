"""The Artie Bias Corpus with real 2019 outputs of Google, Amazon and DeepSpeech, replayed and scored."""

import json

import numpy as np

import pytest
from typer.testing import CliRunner

from harness.backends import load_backend
from harness.cli import app
from harness.manifest import ColumnMap, load_manifest
from harness.report import ReportOptions, build_report
from harness.runner import run_evaluation
from tests.conftest import shared_path

ARTIE_COLUMNS = ColumnMap(id="path", text="sentence", speaker="client_id", tags=("accent", "gender", "age"), missing_values=("", "NA"))


def replay_run(tmp_path, prediction, normalizer="ascii"):
    corpus = shared_path("artie", "artie-bias-corpus.tsv")
    manifest = load_manifest(corpus, columns=ARTIE_COLUMNS, require_audio=False)
    options = {"hypotheses": str(shared_path("artie", "predictions", *prediction.split("/"))), "id_column": "path", "hypothesis_column": "prediction", "match": "stem"}
    backend = load_backend("replay", options)
    run_evaluation(manifest, backend, out_dir=tmp_path / "run", normalizer=normalizer, backend_options=options)
    return tmp_path / "run"


@pytest.mark.parametrize(
    ("prediction", "errors"),
    [("google/en-US/dec-4-2019.tsv", 3703), ("amazon/en-IN/dec-9-2019.tsv", 4973)],
)
def test_published_totals(tmp_path, prediction, errors):
    # `ascii` counts like NIST sclite, whose totals were published; `basic` is fairer to names (below).
    report = build_report(replay_run(tmp_path, prediction), ReportOptions(by=("accent",)))
    overall = report.table.overall
    assert (overall["n_utterances"], overall["ref_words"], overall["errors"]) == (1712, 14511, errors)
    assert overall["wer"] == pytest.approx(errors / 14511)


def test_us_interval_and_small_slices(tmp_path):
    report = build_report(replay_run(tmp_path, "google/en-US/dec-4-2019.tsv"), ReportOptions(by=("accent",), seed=0))
    by_accent = {row["by"]["accent"]: row for row in report.table.slices}
    us = by_accent["us"]
    assert us["n_speakers"] == 339
    # The speaker bootstrap printed [0.1656, 0.2143] here; the log-scale t interval is a little higher and wider.
    assert us["wer_ci_low"] == pytest.approx(0.166, abs=0.002) and us["wer_ci_high"] == pytest.approx(0.216, abs=0.002)
    assert us["n_effective_speakers"] == pytest.approx(236.7, abs=0.05)
    # The same interval computed by hand from per-speaker totals with scipy's t distribution.
    from scipy import stats as scipy_stats

    from harness.report.data import load_run

    frame = load_run(report.run_dir).frame
    per_speaker = frame[frame["accent"] == "us"].groupby("cluster")[["errors", "ref_words"]].sum()
    e, w = per_speaker["errors"].to_numpy(float), per_speaker["ref_words"].to_numpy(float)
    rate, share = e.sum() / w.sum(), w / w.sum()
    variance = np.sum((e - rate * w) ** 2 / (1 - share) ** 2) / w.sum() ** 2
    df = 1 / (np.sum(share**2 * (1 - 2 * share) / (1 - share) ** 2) + np.sum(share**2 / (1 - share)) ** 2)
    centre = np.log(rate) + variance / (2 * rate**2)
    half = scipy_stats.t.ppf(0.975, df) * np.sqrt(variance) / rate
    assert us["wer_ci_low"] == pytest.approx(np.exp(centre - half), rel=1e-9) and us["wer_ci_high"] == pytest.approx(np.exp(centre + half), rel=1e-9)
    # One speaker: no interval at all, rather than a zero-width one.
    single = by_accent["southatlandtic"]
    assert single["n_speakers"] == 1 and single["small"] and single["wer_ci_low"] is None and single["wer_ci_high"] is None


def test_cli_end_to_end_on_artie(tmp_path):
    corpus = shared_path("artie", "artie-bias-corpus.tsv")
    predictions = shared_path("artie", "predictions", "google", "en-US", "dec-4-2019.tsv")
    result = CliRunner().invoke(app, [
        "run", str(corpus), "--backend", "replay", "--backend-arg", f"hypotheses={predictions}", "--backend-arg", "id_column=path",
        "--backend-arg", "hypothesis_column=prediction", "--backend-arg", "match=stem", "--id-column", "path", "--text-column", "sentence",
        "--speaker-column", "client_id", "--tag-columns", "accent,gender,age", "--missing-value", "NA", "--out", str(tmp_path / "run"), "--by", "accent",
        "--normalizer", "ascii",
    ])
    assert result.exit_code == 0, result.output
    assert "accent=us" in result.output and "25.5%" in result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["overall"]["errors"] == 3703
    for entry in [report["overall"], *report["slices"]]:
        for key in ("n_utterances", "n_speakers", "ref_words", "errors", "substitutions", "deletions", "insertions", "wer", "wer_ci_low", "wer_ci_high", "n_failed"):
            assert key in entry
    assert all("by" in s and isinstance(s["small"], bool) for s in report["slices"])


def test_basic_normaliser_keeps_names_and_apostrophes_whole(tmp_path):
    """The default normaliser counts 20 fewer words than sclite: "Fernández" is one word, "it’s" is "it's"."""
    report = build_report(replay_run(tmp_path, "google/en-US/dec-4-2019.tsv", normalizer="basic"), ReportOptions(by=("accent",)))
    overall = report.table.overall
    assert (overall["ref_words"], overall["errors"], overall["n_empty_reference"]) == (14491, 3665, 0)
