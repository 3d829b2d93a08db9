"""Preview: the same draws as the runner, keyed by (seed, utterance id, condition)."""

import numpy as np

from harness.noise import apply_profile, condition_key, load_profile, preview
from harness.seeding import rng_for

RATE_HZ = 16000


def test_preview_matches_the_runner_draw(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASRFAIR_HOME", str(tmp_path / "home"))
    x = (0.1 * np.sin(2 * np.pi * 200 * np.arange(RATE_HZ) / RATE_HZ)).astype(np.float32)
    profile = load_profile("hospital-hum")
    expected, expected_records = apply_profile(profile, x, RATE_HZ, snr_db=5.0, rng=rng_for(42, "utt-9", condition_key("hospital-hum", 5.0)))
    audio, records = preview("hospital-hum", x, RATE_HZ, snr_db=5.0, seed=42, utterance_id="utt-9")
    assert np.array_equal(audio, expected) and records == expected_records
    other, _ = preview(profile, x, RATE_HZ, snr_db=5.0, seed=42, utterance_id="utt-10")
    assert not np.array_equal(audio, other)
