"""Comparing two runs paired by utterance: deltas, Holm across slices, and whether the worst-best gap shrank."""

import json
import re
from pathlib import Path

import jiwer
import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.report.compare import (
    NORMALIZERS_DIFFER,
    compare_frames,
    compare_runs,
    render_comparison_markdown,
    write_comparison,
)
from harness.report.data import RunData
from tests.conftest import shared_path


def make_frame(*, n_speakers: int = 240, utterances_per_speaker: int = 5, seed: int = 0) -> pd.DataFrame:
    """Run A: speaker-level accents; accent "indian" is the worst (rate 0.30 against 0.15)."""
    rng = np.random.default_rng(seed)
    accent = rng.choice(["us", "indian", "scottish"], size=n_speakers)
    gender = rng.choice(["female", "male"], size=n_speakers)
    rate = np.clip(np.where(accent == "indian", 0.30, 0.15) + rng.normal(0, 0.03, n_speakers), 0.01, 0.95)
    speaker = np.repeat(np.arange(n_speakers), utterances_per_speaker)
    words = rng.integers(5, 15, size=speaker.size)
    return pd.DataFrame({
        "utterance_id": [f"u{i}" for i in range(speaker.size)],
        "status": "ok",
        "cluster": [f"s{s}" for s in speaker],
        "errors": rng.binomial(words, rate[speaker]),
        "ref_words": words,
        "accent": pd.array(accent[speaker], dtype="string"),
        "gender": pd.array(gender[speaker], dtype="string"),
    })


def test_identical_runs():
    frame = make_frame()
    result = compare_frames(frame, frame.copy(), by=["accent", "gender"], n_resamples=300)
    assert result.n_paired == len(frame) and result.n_only_a == result.n_only_b == result.n_failed == 0
    for row in [result.overall, *result.slices]:
        assert row["delta"] == 0 and row["p_value"] == 1 and row["p_value_exact"]
        # No speaker changed at all: there is no spread to estimate, so no interval (not a falsely sure [0, 0]).
        assert row["n_speakers_changed"] == 0 and row["delta_ci_low"] is None and row["delta_ci_high"] is None
        assert row["wer_a"] == row["wer_b"]
    for gap in result.gaps:
        assert gap["gap_a"] == gap["gap_b"] and gap["gap_change"] == 0
        # The change of a gap is bounded from both runs' simultaneous intervals: it straddles 0.
        assert gap["gap_change_ci_low"] < 0 < gap["gap_change_ci_high"]
        assert gap["verdict"] == "inconclusive"


def test_planted_improvement_on_one_accent_is_detected_and_the_gap_shrinks():
    frame_a = make_frame()
    frame_b = frame_a.copy()
    rng = np.random.default_rng(9)
    indian = (frame_b["accent"] == "indian").to_numpy()
    # The fine-tune halves the errors of Indian-accented speakers and leaves the others alone.
    frame_b.loc[indian, "errors"] = rng.binomial(frame_a.loc[indian, "errors"], 0.5)
    result = compare_frames(frame_a, frame_b, by=["accent"], n_resamples=500)
    by_accent = {row["by"]["accent"]: row for row in result.slices}
    indian_row = by_accent["indian"]
    assert indian_row["delta"] == pytest.approx((frame_b.loc[indian, "errors"].sum() - frame_a.loc[indian, "errors"].sum()) / frame_a.loc[indian, "ref_words"].sum())
    assert indian_row["delta"] < -0.1 and indian_row["delta_ci_high"] < 0 and indian_row["p_value_holm"] < 0.01
    for accent in ("us", "scottish"):
        assert by_accent[accent]["delta"] == 0 and by_accent[accent]["p_value_holm"] == 1
    (gap,) = result.gaps
    assert gap["worst_a"] == "indian" and gap["worst_b"] != "indian"
    assert gap["gap_change"] == pytest.approx(gap["gap_b"] - gap["gap_a"]) and gap["gap_change"] < -0.1
    assert gap["gap_change_ci_high"] < 0 and gap["verdict"] == "shrank"
    # Overall delta is the pooled one: total change in errors over total reference words.
    assert result.overall["delta"] == pytest.approx((frame_b["errors"].sum() - frame_a["errors"].sum()) / frame_a["ref_words"].sum())


def test_pairing_counts_failures_and_errors():
    frame_a = make_frame(n_speakers=60)
    frame_b = frame_a.iloc[10:].copy()  # B lacks ten utterances
    frame_b.loc[frame_b.index[:3], "status"] = "failed"
    extra = frame_a.iloc[:2].assign(utterance_id=["x1", "x2"])
    frame_b = pd.concat([frame_b, extra])
    result = compare_frames(frame_a, frame_b, by=["accent"], n_resamples=100)
    assert (result.n_paired, result.n_only_a, result.n_only_b, result.n_failed) == (len(frame_a) - 10, 10, 2, 3)
    assert result.overall["n_utterances"] == len(frame_a) - 13

    with pytest.raises(ConfigError, match=r"no utterance of run A \(frame_a: 300 utterances\) is in run B \(frame_b: 2 utterances\)"):
        compare_frames(frame_a, extra, n_resamples=100)
    different = frame_a.copy()
    different.loc[0, "ref_words"] += 1
    with pytest.raises(ConfigError, match="1 paired utterance\\(s\\) have different references"):
        compare_frames(frame_a, different, n_resamples=100)


def test_normalisers_must_match():
    frame = make_frame(n_speakers=20)
    frame["condition_key"] = "clean"
    run_a = RunData(run_dir=Path("runs/a"), record={"normalizer": {"name": "basic"}}, frame=frame, tag_columns=("accent",))
    run_b = RunData(run_dir=Path("runs/b"), record={"normalizer": {"name": "whisper-english"}}, frame=frame, tag_columns=("accent",))
    with pytest.raises(ConfigError) as error:
        compare_runs(run_a, run_b)
    assert str(error.value) == NORMALIZERS_DIFFER.format(a=Path("runs/a"), b=Path("runs/b"), name_a="basic", name_b="whisper-english")
    assert "runs/a" in str(error.value) and "runs/b" in str(error.value)


def test_small_slices_are_flagged_and_left_out_of_holm_and_gap():
    frame_a = make_frame()
    frame_a.loc[frame_a["cluster"].isin(["s0", "s1"]), "accent"] = "rare"
    result = compare_frames(frame_a, frame_a.assign(errors=frame_a["errors"] + 1), by=["accent"], n_resamples=200)
    rare = next(row for row in result.slices if row["by"]["accent"] == "rare")
    assert rare["small"] and rare["p_value_holm"] is None and rare["delta_ci_low"] is None
    assert result.gaps[0]["slices_compared"] == 3


def test_outputs(tmp_path):
    frame = make_frame(n_speakers=60)
    result = compare_frames(frame, frame.assign(errors=frame["errors"] * 0), by=["accent"], n_resamples=100)
    written = write_comparison(result, tmp_path)
    assert [p.name for p in written] == ["comparison.json", "comparison.md"]
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["pairing"]["paired"] == len(frame) and data["overall"]["wer_b"] == 0
    assert "| overall |" in render_comparison_markdown(result)


# --------------------------------------------------------------------------------------------------
# Real data: Google en-US against Amazon en-US on the Artie Bias Corpus (Dec 2019 outputs)


def _basic(text: str) -> str:
    """The scoring rule of ../shared/data/README.md, written out again here to check against."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", str(text).lower()).split())


def _independent_errors(prediction: str) -> int:
    corpus = pd.read_csv(shared_path("artie", "artie-bias-corpus.tsv"), sep="\t", keep_default_na=False)
    hypotheses = pd.read_csv(shared_path("artie", "predictions", *prediction.split("/")), sep="\t", keep_default_na=False)
    by_stem = dict(zip(hypotheses["path"].map(lambda p: p.rsplit(".", 1)[0]), hypotheses["prediction"]))
    total = 0
    for path, sentence in zip(corpus["path"], corpus["sentence"]):
        reference, hypothesis = _basic(sentence), _basic(by_stem.get(path.rsplit(".", 1)[0], ""))
        if not hypothesis:
            total += len(reference.split())
            continue
        words = jiwer.process_words(reference, hypothesis)
        total += words.substitutions + words.deletions + words.insertions
    return total


@pytest.fixture(scope="module")
def artie_runs(tmp_path_factory):
    from tests.test_artie import replay_run

    shared_path("artie")
    return (
        replay_run(tmp_path_factory.mktemp("google"), "google/en-US/dec-4-2019.tsv"),
        replay_run(tmp_path_factory.mktemp("amazon"), "amazon/en-US/dec-9-2019.tsv"),
    )


def test_artie_google_against_amazon(artie_runs, tmp_path):
    google, amazon = artie_runs
    result = compare_runs(google, amazon, by=["accent"], seed=0)
    errors_google = _independent_errors("google/en-US/dec-4-2019.tsv")
    errors_amazon = _independent_errors("amazon/en-US/dec-9-2019.tsv")
    assert errors_google == 3703
    assert (result.n_paired, result.n_only_a, result.n_only_b) == (1712, 0, 0)
    overall = result.overall
    assert (overall["errors_a"], overall["errors_b"], overall["ref_words"]) == (errors_google, errors_amazon, 14511)
    assert overall["delta"] == pytest.approx((errors_amazon - errors_google) / 14511)
    assert overall["delta_ci_low"] < overall["delta"] < overall["delta_ci_high"]
    by_accent = {row["by"]["accent"]: row for row in result.slices}
    # Amazon en-US does worse than Google en-US on Indian-accented speech, better on English (England) speech.
    assert by_accent["indian"]["delta"] > 0 and by_accent["indian"]["delta_ci_low"] > 0
    assert by_accent["england"]["delta"] < 0 and by_accent["england"]["delta_ci_high"] < 0
    write_comparison(result, tmp_path)
    assert json.loads((tmp_path / "comparison.json").read_text())["run_b"]["backend"]["name"] == "replay"
