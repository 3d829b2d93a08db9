"""Telephone channel: nothing above ~3.6 kHz, little below 250 Hz, the band passes, length kept."""

import numpy as np
import pytest

from harness.noise._base import Context
from harness.noise.telephone import Telephone, telephone_band

RATE_HZ = 16000


def band_share(y, lo_hz, hi_hz, rate_hz=RATE_HZ):
    power = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / rate_hz)
    return power[(freqs >= lo_hz) & (freqs < hi_hz)].sum() / power.sum()


def test_white_noise_through_the_channel_is_band_limited():
    x = (0.1 * np.random.default_rng(0).standard_normal(RATE_HZ * 4)).astype(np.float32)
    y = telephone_band(x, RATE_HZ)
    assert y.shape == x.shape and y.dtype == np.float32
    assert band_share(y, 3600, RATE_HZ / 2) < 1e-4
    assert band_share(y, 0, 250) < 1e-3
    assert band_share(y, 400, 3300) > 0.9


@pytest.mark.parametrize("frequency_hz, passes", [(100, False), (1000, True), (3000, True), (5000, False), (7000, False)])
def test_tones_in_and_out_of_band(frequency_hz, passes):
    t = np.arange(RATE_HZ) / RATE_HZ
    x = (0.3 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)
    y = telephone_band(x, RATE_HZ)
    gain_db = 10 * np.log10(np.mean(y[2000:].astype(np.float64) ** 2) / np.mean(x[2000:].astype(np.float64) ** 2) + 1e-20)
    assert (gain_db > -1.5) if passes else (gain_db < -40)


def test_other_input_rates_work():
    x = (0.1 * np.random.default_rng(0).standard_normal(44100)).astype(np.float32)
    y = telephone_band(x, 44100)
    assert y.shape == x.shape and band_share(y, 3600, 22050, rate_hz=44100) < 1e-4


def test_step_record_and_empty_input():
    step = Telephone()
    context = Context(rate_hz=RATE_HZ)
    y, record = step.apply(np.zeros(0, dtype=np.float32), None, context=context)
    assert y.size == 0 and record == {"type": "telephone", "low_hz": 300.0, "high_hz": 3400.0, "channel_rate_hz": 8000, "order": 6}
