"""Reverberation: a synthetic IR decays 60 dB in RT60; file IRs are aligned; level and length kept."""

import math

import numpy as np
import pytest
import soundfile

from harness.noise._base import Context
from harness.noise._spec import Fields
from harness.noise.reverb import Reverb, decay_time_s, reverberate, synthetic_ir

RATE_HZ = 16000


@pytest.mark.parametrize("rt60_s", [0.3, 0.6, 1.2])
def test_synthetic_ir_decays_60_db_in_rt60(rt60_s):
    ir = synthetic_ir(rt60_s, RATE_HZ, drr_db=0.0, rng=np.random.default_rng(0))
    assert decay_time_s(ir, RATE_HZ) == pytest.approx(rt60_s, rel=0.1)
    # energy of the tail in a 10 ms window at t = RT60 is ~60 dB below the window at the start
    win = RATE_HZ // 100
    tail = ir[1:].astype(np.float64)
    start_db = 10 * math.log10(np.mean(tail[:win] ** 2))
    end = int(rt60_s * RATE_HZ) - win
    end_db = 10 * math.log10(np.mean(tail[end : end + win] ** 2))
    assert start_db - end_db == pytest.approx(60, abs=4)


def test_direct_to_reverberant_ratio():
    ir = synthetic_ir(0.5, RATE_HZ, drr_db=6.0, rng=np.random.default_rng(0)).astype(np.float64)
    assert 10 * math.log10(ir[0] ** 2 / np.sum(ir[1:] ** 2)) == pytest.approx(6.0, abs=1e-3)


def test_reverberate_keeps_length_and_power():
    x = np.random.default_rng(1).standard_normal(RATE_HZ).astype(np.float32) * 0.1
    y = reverberate(x, synthetic_ir(0.6, RATE_HZ, drr_db=0.0, rng=np.random.default_rng(0)))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.mean(y.astype(np.float64) ** 2) == pytest.approx(np.mean(x.astype(np.float64) ** 2), rel=1e-4)
    assert not np.allclose(x, y)


def test_file_ir_is_aligned_to_its_peak(tmp_path):
    ir = np.zeros(800, dtype=np.float32)
    ir[100] = 1.0  # 100 samples of pre-delay must not delay the output
    soundfile.write(tmp_path / "ir.wav", ir, RATE_HZ, subtype="FLOAT")
    step = Reverb.from_spec(Fields({"ir": "ir.wav"}, file="t.yaml", field="transforms[0]", base_dir=tmp_path), type="reverb")
    x = np.random.default_rng(2).standard_normal(RATE_HZ).astype(np.float32) * 0.1
    context = Context(rate_hz=RATE_HZ)
    y, record = step.apply(x, step.draw(np.random.default_rng(0), n_samples=x.size, context=context), context=context)
    assert np.allclose(y, x, atol=1e-5)
    assert record["ir"].endswith("ir.wav")


def test_silent_input_stays_silent():
    x = np.zeros(1000, dtype=np.float32)
    assert not np.any(reverberate(x, synthetic_ir(0.2, RATE_HZ, drr_db=0, rng=np.random.default_rng(0))))
