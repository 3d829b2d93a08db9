"""Lossy codecs: the output differs from the input, yet lines up and correlates highly with it."""

import numpy as np
import pytest

from harness.noise._base import Context
from harness.noise.codec import Codec, codec_round_trip

RATE_HZ = 16000


def voice(n_samples, rate_hz=RATE_HZ):
    t = np.arange(n_samples) / rate_hz
    phase = 2 * np.pi * np.cumsum(130 + 30 * np.sin(2 * np.pi * 0.5 * t)) / rate_hz
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * envelope * sum(np.sin(k * phase) / k for k in range(1, 15))).astype(np.float32)


@pytest.mark.parametrize("codec, bitrate_kbps", [("mp3", 16), ("mp3", 64), ("opus", 8), ("opus", 24)])
def test_round_trip_differs_but_correlates(codec, bitrate_kbps):
    x = voice(RATE_HZ * 2)
    y, record = codec_round_trip(x, RATE_HZ, codec=codec, bitrate_kbps=bitrate_kbps)
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.allclose(x, y, atol=1e-4)
    assert np.corrcoef(x, y)[0, 1] > 0.9
    expected_bytes = bitrate_kbps * 1000 / 8 * 2
    assert 0.5 * expected_bytes < record["encoded_bytes"] < 2.0 * expected_bytes


def test_lower_bitrate_is_worse():
    x = voice(RATE_HZ * 2)
    error = {b: np.mean((codec_round_trip(x, RATE_HZ, codec="mp3", bitrate_kbps=b)[0] - x) ** 2) for b in (16, 96)}
    assert error[16] > error[96]


def test_unsupported_rate_goes_through_nearest_codec_rate():
    x = voice(44100, rate_hz=44100)
    y, record = codec_round_trip(x, 44100, codec="opus", bitrate_kbps=24)
    assert record["codec_rate_hz"] == 48000 and y.shape == x.shape and np.corrcoef(x, y)[0, 1] > 0.9


def test_step_is_deterministic_and_handles_empty_input():
    step = Codec(codec="mp3", bitrate_kbps=32)
    context = Context(rate_hz=RATE_HZ)
    x = voice(RATE_HZ // 2)
    assert np.array_equal(step.apply(x, None, context=context)[0], step.apply(x, None, context=context)[0])
    assert step.apply(np.zeros(0, dtype=np.float32), None, context=context)[0].size == 0
