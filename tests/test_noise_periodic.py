"""Periodic interference: a hum has partials at k*F; beeps arrive every interval_s."""

import numpy as np
import pytest

from harness.noise._base import Context
from harness.noise.periodic import Beeps, Tone, beep_train, harmonic_tone

RATE_HZ = 16000


def test_tone_partials_at_multiples_with_rolloff():
    tone = harmonic_tone(RATE_HZ, RATE_HZ, frequency_hz=100, n_harmonics=4, rolloff_db=6, phases_rad=np.zeros(4))
    spectrum = np.abs(np.fft.rfft(tone)) / (RATE_HZ / 2)  # 1 Hz bins over 1 s
    assert [round(float(spectrum[f]), 3) for f in (100, 200, 300, 400)] == pytest.approx([1.0, 0.501, 0.251, 0.126], abs=0.002)
    assert spectrum[150] < 1e-3 and spectrum[500] < 1e-3


def test_partials_above_nyquist_are_dropped():
    tone = harmonic_tone(1000, 8000, frequency_hz=3000, n_harmonics=3, rolloff_db=0, phases_rad=np.zeros(3))
    assert np.max(np.abs(tone)) <= 1.0 + 1e-6  # only the 3 kHz partial survives


def test_beeps_every_interval_from_onset():
    train = beep_train(RATE_HZ * 3, RATE_HZ, frequency_hz=1000, beep_s=0.1, interval_s=1.0, first_onset_s=0.25)
    active = np.abs(train) > 1e-3
    starts = np.flatnonzero(active[1:] & ~active[:-1]) + 1
    onsets = [s for s in starts if s == starts[0] or not active[s - 80 : s].any()]
    assert np.allclose(onsets, [4000, 20000, 36000], atol=80)  # within 5 ms (the ramp)
    first_beep = np.flatnonzero(active[:12000])
    assert (first_beep[-1] - first_beep[0]) / RATE_HZ == pytest.approx(0.1, abs=0.006)


def test_no_beep_in_short_utterance_is_silent():
    assert not np.any(beep_train(100, RATE_HZ, frequency_hz=1000, beep_s=0.1, interval_s=1.0, first_onset_s=0.5))


def test_draws_are_recorded():
    context = Context(rate_hz=RATE_HZ)
    beeps = Beeps(interval_s=2.0)
    drawn = beeps.draw(np.random.default_rng(0), n_samples=RATE_HZ, context=context)
    _, record = beeps.generate(drawn, n_samples=RATE_HZ, context=context)
    assert 0 <= record["first_onset_s"] < 2.0
    tone = Tone(frequency_hz=50, n_harmonics=3)
    _, record = tone.generate(tone.draw(np.random.default_rng(0), n_samples=10, context=context), n_samples=10, context=context)
    assert len(record["phases_rad"]) == 3
