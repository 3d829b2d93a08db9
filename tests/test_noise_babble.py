"""Babble: equal-power talkers from the pool, ids and offsets recorded, clear errors without a pool."""

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.noise._base import Context
from harness.noise.babble import Babble, babble_mix

RATE_HZ = 16000


def pool_of(n_available):
    talkers = [(f"u{k}", (0.01 * (k + 1) * np.random.default_rng(k).standard_normal(RATE_HZ)).astype(np.float32)) for k in range(n_available)]

    def pool(n, rng):
        picked = rng.choice(len(talkers), size=min(n, len(talkers)), replace=False)
        return [talkers[i] for i in picked]

    return pool


def test_talkers_are_equal_power_and_ids_recorded():
    source = Babble(n_talkers=3)
    context = Context(rate_hz=RATE_HZ, babble_pool=pool_of(10))
    drawn = source.draw(np.random.default_rng(0), n_samples=RATE_HZ * 2, context=context)
    noise, record = source.generate(drawn, n_samples=RATE_HZ * 2, context=context)
    assert record["n_talkers"] == 3 and len({t["utterance_id"] for t in record["talkers"]}) == 3
    # three independent unit-power talkers sum to power ~3 whatever their original levels
    assert np.mean(noise.astype(np.float64) ** 2) == pytest.approx(3.0, rel=0.1)


def test_mix_of_silent_talker_leaves_it_out():
    mixed = babble_mix([np.zeros(100, dtype=np.float32), np.ones(100, dtype=np.float32)], [0, 0], 50)
    assert np.allclose(mixed, 1.0)


def test_fewer_talkers_than_asked_uses_what_the_pool_has():
    context = Context(rate_hz=RATE_HZ, babble_pool=pool_of(2))
    source = Babble(n_talkers=6)
    _, record = source.generate(source.draw(np.random.default_rng(0), n_samples=100, context=context), n_samples=100, context=context)
    assert record["n_talkers"] == 2 and record["n_talkers_requested"] == 6


def test_plain_arrays_from_pool_are_accepted():
    context = Context(rate_hz=RATE_HZ, babble_pool=lambda n, rng: [np.ones(10, dtype=np.float32)] * n)
    source = Babble(n_talkers=2)
    noise, record = source.generate(source.draw(np.random.default_rng(0), n_samples=30, context=context), n_samples=30, context=context)
    assert noise.size == 30 and record["talkers"][0]["utterance_id"] is None


def test_no_pool_is_a_config_error():
    with pytest.raises(ConfigError, match="babble_pool"):
        Babble().draw(np.random.default_rng(0), n_samples=10, context=Context(rate_hz=RATE_HZ))


def test_empty_pool_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 2 utterances"):
        Babble().draw(np.random.default_rng(0), n_samples=10, context=Context(rate_hz=RATE_HZ, babble_pool=lambda n, rng: []))
