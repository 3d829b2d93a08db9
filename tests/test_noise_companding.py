"""mu-law and A-law: round-trip error within half a quantisation step of the companding curve."""

import math

import numpy as np
import pytest

from harness.noise.companding import a_law_round_trip, mu_law_round_trip

MU = 255.0
A = 87.6
HALF_STEP = 0.5 / 127


def test_mu_law_error_bound_everywhere():
    x = np.linspace(-1, 1, 200001)
    y = mu_law_round_trip(x).astype(np.float64)
    magnitude = np.maximum(np.abs(x), np.abs(y))
    # |dx/dy| = ln(1+mu)/mu * (1 + mu|x|): half a step in the compressed domain maps to at most this
    bound = HALF_STEP * math.log1p(MU) / MU * (1 + MU * magnitude) + 1e-6
    assert np.all(np.abs(y - x) <= bound)
    assert np.max(np.abs(y - x)) < 0.022  # worst case near full scale: ~2% of the amplitude
    assert np.max(np.abs(y - x)[np.abs(x) < 0.01]) < 3.1e-4  # quiet samples: >10x finer than linear 8-bit (3.9e-3)


def test_a_law_error_bound_everywhere():
    x = np.linspace(-1, 1, 200001)
    y = a_law_round_trip(x).astype(np.float64)
    magnitude = np.maximum(np.abs(x), np.abs(y))
    slope = np.where(magnitude < 1 / A, (1 + math.log(A)) / A, (1 + math.log(A)) * magnitude)
    assert np.all(np.abs(y - x) <= HALF_STEP * slope + 1e-6)


@pytest.mark.parametrize("round_trip", [mu_law_round_trip, a_law_round_trip])
def test_speech_level_snr_about_38_db(round_trip):
    rng = np.random.default_rng(0)
    x = np.clip(0.05 * rng.standard_normal(16000), -1, 1)  # ~ -26 dBFS
    y = round_trip(x).astype(np.float64)
    snr_db = 10 * np.log10(np.sum(x**2) / np.sum((y - x) ** 2))
    assert 33 < snr_db < 45


@pytest.mark.parametrize("round_trip", [mu_law_round_trip, a_law_round_trip])
def test_symmetry_zero_and_clipping(round_trip):
    x = np.array([0.0, 0.3, -0.3, 1.5, -2.0], dtype=np.float32)
    y = round_trip(x)
    assert y[0] == 0 and y[1] == -y[2] and y[3] == pytest.approx(1.0) and y[4] == pytest.approx(-1.0)
    assert y.dtype == np.float32
