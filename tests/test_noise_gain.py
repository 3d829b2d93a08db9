"""Gain: fixed or drawn in dB; applied exactly and recorded."""

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.noise._base import Context
from harness.noise._spec import Fields
from harness.noise.gain import Gain

CONTEXT = Context(rate_hz=16000)


def gain_from(spec):
    return Gain.from_spec(Fields(spec, file="t.yaml", field="transforms[0]"), type="gain")


def test_fixed_gain_scales_exactly():
    step = gain_from({"gain_db": -6.0})
    x = np.full(10, 0.5, dtype=np.float32)
    y, record = step.apply(x, step.draw(np.random.default_rng(0), n_samples=10, context=CONTEXT), context=CONTEXT)
    assert np.allclose(y, 0.5 * 10 ** (-6 / 20)) and record["gain_db"] == -6.0


def test_drawn_gain_within_range_and_seeded():
    step = gain_from({"min_gain_db": -10, "max_gain_db": 10})
    draws = [step.draw(np.random.default_rng(s), n_samples=1, context=CONTEXT).gain_db for s in range(50)]
    assert all(-10 <= d <= 10 for d in draws) and len(set(draws)) == 50
    assert step.draw(np.random.default_rng(3), n_samples=1, context=CONTEXT) == step.draw(np.random.default_rng(3), n_samples=1, context=CONTEXT)


def test_large_gain_is_not_clipped():
    step = gain_from({"gain_db": 20})
    y, record = step.apply(np.full(4, 0.5, dtype=np.float32), step.draw(np.random.default_rng(0), n_samples=4, context=CONTEXT), context=CONTEXT)
    assert record["peak"] == pytest.approx(5.0)


@pytest.mark.parametrize("spec, message", [
    ({"gain_db": "loud"}, "must be a finite number"),
    ({"min_gain_db": 5, "max_gain_db": 1}, "is above max_gain_db"),
    ({"gain_db": 3, "gian": 1}, "is not a parameter"),
])
def test_bad_parameters(spec, message):
    with pytest.raises(ConfigError, match=message):
        gain_from(spec)
