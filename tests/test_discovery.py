"""Worst-slice discovery: planted slices are found and ranked, null data yields no findings, small slices are never ranked."""

import json

import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.report.discovery import (
    BAD_DEPTH,
    UNKNOWN_TAG,
    discover_run,
    discover_slices,
    render_discovery_markdown,
    write_discovery,
)
from harness.report.slices import NOT_GIVEN


def make_frame(
    *,
    n_speakers: int = 400,
    utterances_per_speaker: int = 4,
    seed: int = 0,
    base_rate: float = 0.15,
    planted: dict[str, str] | None = None,
    planted_rate: float = 0.35,
) -> pd.DataFrame:
    """Results with speaker-level tags; speakers matching every tag=value in `planted` get `planted_rate`."""
    rng = np.random.default_rng(seed)
    speaker_tags = {
        "accent": rng.choice(["us", "indian", "scottish", "nigerian"], size=n_speakers),
        "gender": rng.choice(["female", "male"], size=n_speakers),
        "age": rng.choice(["teens", "twenties", "sixties"], size=n_speakers),
    }
    in_planted = np.ones(n_speakers, dtype=bool) if planted else np.zeros(n_speakers, dtype=bool)
    for tag, value in (planted or {}).items():
        in_planted &= speaker_tags[tag] == value
    # Speakers differ around their group's rate, so the clustering matters.
    rate = np.clip(np.where(in_planted, planted_rate, base_rate) + rng.normal(0, 0.03, n_speakers), 0.01, 0.95)
    speaker = np.repeat(np.arange(n_speakers), utterances_per_speaker)
    words = rng.integers(5, 15, size=speaker.size)
    errors = rng.binomial(words, rate[speaker])
    return pd.DataFrame({
        "utterance_id": [f"u{i}" for i in range(speaker.size)],
        "condition_key": "clean",
        "status": "ok",
        "speaker": [f"s{s}" for s in speaker],
        "cluster": [f"s{s}" for s in speaker],
        "errors": errors,
        "ref_words": words,
        **{tag: pd.array(values[speaker], dtype="string") for tag, values in speaker_tags.items()},
    })


def test_planted_intersection_is_found_and_ranked_first():
    frame = make_frame(planted={"accent": "indian", "gender": "female"})
    result = discover_slices(frame, tags=["accent", "gender", "age"], n_resamples=500, seed=1)
    top = result.discoveries[0]
    assert top.slice == {"accent": "indian", "gender": "female"}
    assert top.rank == 1 and top.significant and top.q_value <= 0.05
    assert top.gap_ci_low > 0 and top.wer_ci_low < top.wer < top.wer_ci_high
    # Excess errors are the errors above what the slice would make at the overall rate.
    rows = frame[(frame["accent"] == "indian") & (frame["gender"] == "female")]
    overall = frame["errors"].sum() / frame["ref_words"].sum()
    assert top.errors == rows["errors"].sum() and top.ref_words == rows["ref_words"].sum()
    assert top.excess_errors == pytest.approx(rows["errors"].sum() - overall * rows["ref_words"].sum())
    assert top.n_speakers == rows["speaker"].nunique()
    assert top.n_speakers_outside == frame["speaker"].nunique() - top.n_speakers
    # The intersection is worse than both its parents: it is not just restating one of them.
    assert top.gap_to_worst_parent > 0.05
    # Discoveries are ordered by excess errors.
    excess = [d.excess_errors for d in result.discoveries]
    assert excess == sorted(excess, reverse=True)


def test_null_data_yields_no_discoveries_and_calibrated_p_values():
    raw_p = []
    for seed in range(4):
        result = discover_slices(make_frame(seed=seed), n_resamples=400, seed=seed)
        assert len(result.discoveries) == 0
        raw_p += [c.p_value for c in result.candidates]
    # Under the null a one-sided p-value is below 0.05 about 5% of the time (slices overlap, so loosely).
    assert np.mean(np.array(raw_p) < 0.05) < 0.12
    assert np.mean(np.array(raw_p) < 0.5) == pytest.approx(0.5, abs=0.2)


def test_small_slices_are_suppressed_never_ranked():
    frame = make_frame(n_speakers=200)
    # Three speakers who get every word wrong, in a slice of their own.
    tiny = frame["speaker"].isin(["s0", "s1", "s2"])
    frame.loc[tiny, "accent"] = "rare"
    frame.loc[tiny, "errors"] = frame.loc[tiny, "ref_words"]
    result = discover_slices(frame, n_resamples=300)
    assert all("rare" not in c.slice.values() for c in result.candidates)
    assert result.n_suppressed > 0
    assert result.n_enumerated == result.n_tried + result.n_suppressed + result.n_redundant + result.n_whole
    assert all(c.n_speakers >= 10 and c.ref_words >= 100 for c in result.candidates)


def test_counts_overall_and_missing_tags():
    frame = make_frame(n_speakers=120)
    frame["age"] = frame["age"].astype(object).where(~frame["speaker"].isin([f"s{i}" for i in range(30)]), None).astype("string")
    frame.loc[frame.index[:5], "status"] = "failed"
    result = discover_slices(frame, tags=["accent", "age"], max_depth=1, n_resamples=200, min_speakers=5)
    ok = frame[frame["status"] == "ok"]
    assert result.overall["n_failed"] == 5 and result.overall["n_utterances"] == len(ok)
    assert result.overall["wer"] == pytest.approx(ok["errors"].sum() / ok["ref_words"].sum())
    # 4 accents + 3 ages + "(not given)", one tag at a time.
    assert result.n_enumerated == 8
    not_given = [c for c in result.candidates if c.slice == {"age": NOT_GIVEN}]
    # s0's four utterances all failed, so 29 of the 30 untagged speakers remain.
    assert len(not_given) == 1 and not_given[0].n_speakers == 29 and result.overall["n_speakers"] == 119


def test_row_level_tag_with_shared_speakers():
    """A tag that varies within a speaker (device): the speaker is in and out of the slice; still found."""
    frame = make_frame(n_speakers=300, utterances_per_speaker=6, seed=3)
    rng = np.random.default_rng(5)
    frame["device"] = pd.array(rng.choice(["phone", "laptop", "headset"], size=len(frame)), dtype="string")
    phone = (frame["device"] == "phone").to_numpy()
    frame.loc[phone, "errors"] = rng.binomial(frame.loc[phone, "ref_words"], 0.3)
    result = discover_slices(frame, tags=["accent", "device"], max_depth=1, n_resamples=400)
    top = result.discoveries[0]
    assert top.slice == {"device": "phone"}
    assert top.n_speakers_outside > 250  # almost every speaker also has rows on other devices
    assert {d.slice["device"] for d in result.discoveries if "device" in d.slice} == {"phone"}


def test_redundant_and_whole_slices_are_not_tried():
    frame = make_frame(n_speakers=100)
    frame["language"] = pd.array(["en"] * len(frame), dtype="string")  # one value: the slice is every row
    result = discover_slices(frame, tags=["accent", "language"], n_resamples=200)
    assert result.n_whole == 1
    # accent=X, language=en holds exactly accent=X's rows.
    assert result.n_redundant == 4
    assert all(c.depth == 1 for c in result.candidates)


def test_depth_three_and_errors():
    frame = make_frame(n_speakers=600, planted={"accent": "us", "gender": "male", "age": "teens"}, planted_rate=0.6)
    result = discover_slices(frame, max_depth=3, n_resamples=300, min_speakers=10)
    assert result.discoveries[0].slice == {"accent": "us", "gender": "male", "age": "teens"}
    with pytest.raises(ConfigError) as error:
        discover_slices(frame, max_depth=4)
    assert str(error.value) == BAD_DEPTH.format(value=4)
    with pytest.raises(ConfigError) as error:
        discover_slices(frame, tags=["dialect"])
    assert str(error.value) == UNKNOWN_TAG.format(tag="dialect", available="accent, gender, age")


def test_outputs(tmp_path):
    result = discover_slices(make_frame(planted={"accent": "scottish"}), n_resamples=200)
    written = write_discovery(result, tmp_path)
    assert [p.name for p in written] == ["slices.json", "slices.md"]
    data = json.loads((tmp_path / "slices.json").read_text())
    assert data["counts"]["tried"] == result.n_tried and data["discoveries"][0]["slice"] == {"accent": "scottish"}
    assert len(data["candidates"]) == result.n_tried
    markdown = render_discovery_markdown(result)
    assert "| 1 | accent=scottish |" in markdown and "Benjamini–Hochberg" in markdown


# --------------------------------------------------------------------------------------------------
# Real data: the Artie Bias Corpus with Google's en-US output (Dec 2019)


@pytest.fixture(scope="module")
def google_run(tmp_path_factory):
    from tests.test_artie import replay_run

    return replay_run(tmp_path_factory.mktemp("google"), "google/en-US/dec-4-2019.tsv")


def test_artie_google(google_run):
    result = discover_run(google_run)
    assert result.tags == ("accent", "age", "gender")
    assert (result.overall["errors"], result.overall["ref_words"], result.overall["n_speakers"]) == (3703, 14511, 969)
    assert result.n_enumerated == result.n_tried + result.n_suppressed + result.n_redundant + result.n_whole
    # Every slice's counts agree with an independent groupby of the scored rows.
    from harness.report.data import load_run

    frame = load_run(google_run).frame
    frame = frame.assign(**{t: frame[t].fillna(NOT_GIVEN) for t in ("accent", "age", "gender")})
    for finding in result.candidates:
        rows = frame
        for tag, value in finding.slice.items():
            rows = rows[rows[tag] == value]
        assert (finding.errors, finding.ref_words, finding.n_speakers) == (rows["errors"].sum(), rows["ref_words"].sum(), rows["cluster"].nunique())
    worst = result.worst(1)[0]
    # Speakers who gave no accent: 1,407 errors over 4,896 words, 158 more than at the overall 25.5%.
    untagged = frame[frame["accent"] == NOT_GIVEN]
    assert (untagged["errors"].sum(), untagged["ref_words"].sum()) == (1407, 4896)
    assert worst.slice == {"accent": NOT_GIVEN} and worst.excess_errors == pytest.approx(1407 - 3703 / 14511 * 4896)
    assert not worst.significant and worst.q_value > 0.05  # not after BH over every slice tried
