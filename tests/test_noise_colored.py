"""White, pink and brown noise: unit RMS, the right spectral slope, and reproducible from a seed."""

import numpy as np
import pytest

from harness.noise.colored import ColoredNoise, colored_noise
from harness.noise._base import Context

RATE_HZ = 16000


def octave_powers_db(noise: np.ndarray) -> list[float]:
    power = np.abs(np.fft.rfft(noise.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(noise.size, 1 / RATE_HZ)
    return [10 * np.log10(power[(freqs >= lo) & (freqs < 2 * lo)].sum()) for lo in (125, 250, 500, 1000, 2000)]


@pytest.mark.parametrize("color, slope_db_per_octave", [("white", 3.0), ("pink", 0.0), ("brown", -3.0)])
def test_power_per_octave_slope(color, slope_db_per_octave):
    noise = colored_noise(RATE_HZ * 8, RATE_HZ, color=color, rng=np.random.default_rng(0))
    slopes = np.diff(octave_powers_db(noise))
    # power per octave: white +3 dB/oct (bandwidth doubles), pink flat, brown -3 dB/oct
    assert np.allclose(slopes, slope_db_per_octave, atol=0.5)


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_unit_rms_and_float32(color):
    noise = colored_noise(12345, RATE_HZ, color=color, rng=np.random.default_rng(1))
    assert noise.dtype == np.float32 and noise.shape == (12345,)
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-5)
    assert abs(float(np.mean(noise))) < 0.05


def test_zero_length():
    assert colored_noise(0, RATE_HZ, color="pink", rng=np.random.default_rng(0)).size == 0


def test_draw_then_generate_is_reproducible_from_recorded_seed():
    source = ColoredNoise(color="pink")
    context = Context(rate_hz=RATE_HZ)
    drawn = source.draw(np.random.default_rng(7), n_samples=1000, context=context)
    a, record = source.generate(drawn, n_samples=1000, context=context)
    b, _ = source.generate(type(drawn)(seed=record["seed"]), n_samples=1000, context=context)
    assert np.array_equal(a, b) and record == {"type": "pink", "seed": drawn.seed}
