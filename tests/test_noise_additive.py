"""Additive noise: the measured SNR of the mixed output hits the target for every source."""

import math

import numpy as np
import pytest
import soundfile

from harness.errors import ConfigError
from harness.noise import apply_profile, mix_at_snr, snr_db_of
from harness.noise.profile import profile_from_mapping

RATE_HZ = 16000


def speechlike(n_samples: int, seed: int = 0) -> np.ndarray:
    """Harmonic 'voice' with syllable-rate amplitude modulation and pauses, around -20 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / RATE_HZ
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE_HZ
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.5)
    return (0.1 * voice * envelope + 0.001 * rng.standard_normal(n_samples)).astype(np.float32)


def profile_with(source: dict, tmp_path=None, snr_db="grid"):
    return profile_from_mapping({"name": "t", "transforms": [{"type": "additive", "snr_db": snr_db, "source": source}]},
                                file="t.yaml", base_dir=tmp_path)


def babble_pool(n, rng):
    return [(f"other{k}", speechlike(RATE_HZ * 2, seed=100 + int(rng.integers(1000)))) for k in range(n)]


@pytest.fixture
def recorded_source(tmp_path):
    path = tmp_path / "hum.wav"
    rng = np.random.default_rng(3)
    soundfile.write(path, (0.05 * rng.standard_normal(RATE_HZ // 2 * 3)).astype(np.float32), RATE_HZ)
    return {"type": "recorded", "files": [str(path)]}


SOURCES = [
    {"type": "white"},
    {"type": "pink"},
    {"type": "brown"},
    {"type": "babble", "n_talkers": 4},
    {"type": "tone", "frequency_hz": 60, "n_harmonics": 5},
    {"type": "beeps", "frequency_hz": 1000, "beep_s": 0.1, "interval_s": 0.5},
]


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 5.0, 0.0, -5.0])
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s["type"])
def test_measured_snr_within_0p1_db_for_every_source(source, snr_db):
    x = speechlike(RATE_HZ * 3)
    profile = profile_with(source)
    y, records = apply_profile(profile, x, RATE_HZ, snr_db=snr_db, rng=np.random.default_rng(1), babble_pool=babble_pool)
    measured = 10 * math.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y.astype(np.float64) - x) ** 2))
    assert abs(measured - snr_db) < 0.1
    assert abs(records[0]["measured_snr_db"] - snr_db) < 0.1
    assert records[0]["target_snr_db"] == snr_db


@pytest.mark.parametrize("snr_db", [10.0, 0.0])
def test_measured_snr_for_recorded_source(recorded_source, tmp_path, snr_db):
    x = speechlike(RATE_HZ * 4)  # longer than the 1.5 s recording: looped
    y, records = apply_profile(profile_with(recorded_source, tmp_path), x, RATE_HZ, snr_db=snr_db, rng=np.random.default_rng(2))
    assert abs(snr_db_of(x, y) - snr_db) < 0.1
    assert records[0]["sources"][0]["looped"] is True


def test_mix_of_sources_hits_snr_of_the_sum():
    profile = profile_from_mapping({"name": "t", "transforms": [{"type": "additive", "sources": [
        {"type": "pink", "level_db": 0}, {"type": "tone", "frequency_hz": 100, "level_db": -10}]}]}, file="t.yaml")
    x = speechlike(RATE_HZ * 2)
    y, records = apply_profile(profile, x, RATE_HZ, snr_db=3.0, rng=np.random.default_rng(5))
    assert abs(snr_db_of(x, y) - 3.0) < 0.1
    assert [s["level_db"] for s in records[0]["sources"]] == [0.0, -10.0]


def test_fixed_snr_step_ignores_grid_and_needs_no_snr():
    profile = profile_with({"type": "white"}, snr_db=12)
    assert profile.uses_snr is False
    x = speechlike(RATE_HZ)
    y, records = apply_profile(profile, x, RATE_HZ, snr_db=None, rng=np.random.default_rng(0))
    assert abs(snr_db_of(x, y) - 12.0) < 0.1
    assert records[0]["snr_from_grid"] is False


def test_grid_step_without_snr_is_a_config_error():
    with pytest.raises(ConfigError, match="no SNR was given"):
        apply_profile(profile_with({"type": "white"}), speechlike(100), RATE_HZ, snr_db=None, rng=np.random.default_rng(0))


def test_silent_input_gets_no_noise():
    x = np.zeros(RATE_HZ, dtype=np.float32)
    y, record = mix_at_snr(x, np.ones(RATE_HZ, dtype=np.float32), 5.0)
    assert np.array_equal(y, x)
    assert record["measured_snr_db"] is None and "silent input" in record["skipped"]


def test_silent_noise_leaves_signal_unchanged():
    x = speechlike(RATE_HZ)
    y, record = mix_at_snr(x, np.zeros_like(x), 5.0)
    assert np.array_equal(y, x) and "noise is silent" in record["skipped"]


def test_output_is_float32_same_length_and_not_clipped():
    x = speechlike(RATE_HZ) * 9
    y, record = mix_at_snr(x, np.random.default_rng(0).standard_normal(x.size).astype(np.float32), -10.0)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert record["peak"] == pytest.approx(float(np.max(np.abs(y))))


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(snr_db=st.floats(-30, 60), seed=st.integers(0, 2**32), n_samples=st.integers(16, 4000), level=st.floats(1e-4, 10))
def test_mix_at_snr_property(snr_db, seed, n_samples, level):
    rng = np.random.default_rng(seed)
    signal = (level * rng.standard_normal(n_samples)).astype(np.float32)
    noise = rng.uniform(-1, 1, n_samples).astype(np.float32)
    mixed, record = mix_at_snr(signal, noise, snr_db)
    assert abs(snr_db_of(signal, mixed) - snr_db) < 0.1
    assert abs(record["measured_snr_db"] - snr_db) < 0.1
