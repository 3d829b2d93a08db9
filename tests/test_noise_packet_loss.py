"""Packet loss: the stated share of 20 ms frames is zeroed, chosen per utterance from the generator."""

import numpy as np
import pytest

from harness.noise._base import Context
from harness.noise.packet_loss import PacketLoss, frame_count

RATE_HZ = 16000
CONTEXT = Context(rate_hz=RATE_HZ)


@pytest.mark.parametrize("loss_rate", [0.0, 0.05, 0.1, 0.3, 1.0])
def test_expected_fraction_of_20ms_frames_zeroed(loss_rate):
    x = (0.1 + np.random.default_rng(0).random(RATE_HZ * 5)).astype(np.float32)  # never zero
    step = PacketLoss(loss_rate=loss_rate)
    drawn = step.draw(np.random.default_rng(1), n_samples=x.size, context=CONTEXT)
    y, record = step.apply(x, drawn, context=CONTEXT)
    frames = y.reshape(-1, 320)
    zeroed = np.all(frames == 0, axis=1)
    assert record["n_frames"] == 250
    assert zeroed.sum() == round(loss_rate * 250) == len(record["dropped_frames"])
    assert np.flatnonzero(zeroed).tolist() == record["dropped_frames"]
    assert np.array_equal(frames[~zeroed], x.reshape(-1, 320)[~zeroed])


def test_partial_last_frame_counts():
    assert frame_count(RATE_HZ // 2 + 1, RATE_HZ, 20.0) == (320, 26)


def test_different_generators_drop_different_frames():
    step = PacketLoss(loss_rate=0.2)
    a = step.draw(np.random.default_rng(1), n_samples=RATE_HZ * 2, context=CONTEXT).dropped_frames
    b = step.draw(np.random.default_rng(2), n_samples=RATE_HZ * 2, context=CONTEXT).dropped_frames
    assert a != b and len(a) == len(b) == 20
