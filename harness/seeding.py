"""Random generators keyed by what they are for, never by position or global state.

A draw for an utterance under a condition depends only on (run seed, utterance id, condition),
so results do not change with order, batch size or the number of workers.
"""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A PCG64 generator seeded from the run seed and any number of string-able keys."""
    return np.random.default_rng(seed_for(seed, *keys))


def seed_for(seed: int, *keys: object) -> int:
    """A 63-bit integer derived from the run seed and keys; small enough to record in JSON."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(int(seed)).encode())
    for key in keys:
        digest.update(b"\x1f")
        digest.update(str(key).encode("utf-8"))
    return int.from_bytes(digest.digest(), "little") >> 1
