"""Clipping: at a fixed level or at the level that clips a given share of samples."""

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.noise._base import Context
from harness.noise._spec import Fields
from harness.noise.clipping import Clip

CONTEXT = Context(rate_hz=16000)


def clip_from(spec):
    return Clip.from_spec(Fields(spec, file="t.yaml", field="transforms[0]"), type="clip")


def test_threshold_dbfs():
    x = np.linspace(-1, 1, 1001, dtype=np.float32)
    y, record = clip_from({"threshold_dbfs": -6.0206}).apply(x, None, context=CONTEXT)
    assert np.max(np.abs(y)) == pytest.approx(0.5, abs=1e-4)
    assert record["clipped_fraction"] == pytest.approx(0.5, abs=0.01)


def test_clipped_percent_clips_that_share():
    x = np.random.default_rng(0).standard_normal(100000).astype(np.float32) * 0.1
    y, record = clip_from({"clipped_percent": 2}).apply(x, None, context=CONTEXT)
    assert record["clipped_fraction"] == pytest.approx(0.02, abs=0.001)
    assert np.mean(np.abs(y) >= record["threshold"] * 0.99999) == pytest.approx(0.02, abs=0.001)


def test_silent_input_unchanged():
    y, record = clip_from({"clipped_percent": 5}).apply(np.zeros(100, dtype=np.float32), None, context=CONTEXT)
    assert not np.any(y) and record["clipped_fraction"] == 0.0


def test_needs_exactly_one_mode():
    with pytest.raises(ConfigError, match="exactly one of"):
        clip_from({})
    with pytest.raises(ConfigError, match="exactly one of"):
        clip_from({"threshold_dbfs": -3, "clipped_percent": 1})
