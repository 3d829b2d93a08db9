"""One unit of work: preparation keyed by (seed, utterance, condition), bounded caches, babble by position."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import soundfile

from harness.manifest import Utterance, utterances_table
from harness.pipeline import AudioLoader, BabbleCandidates, babble_pool_for


def tone_files(tmp_path, n):
    paths = []
    for i in range(n):
        path = tmp_path / f"t{i}.wav"
        soundfile.write(path, (0.1 * (i + 1) * np.sin(np.arange(1600) * (i + 1) / 10)).astype(np.float32), 16000)
        paths.append(path)
    return paths


def test_babble_by_position_draws_the_same_talkers_as_the_list(tmp_path):
    utterances = [Utterance(id=f"u{i}", text="x", audio=path) for i, path in enumerate(tone_files(tmp_path, 7))]
    candidates = BabbleCandidates.of(utterances_table(utterances))
    load = AudioLoader(16000)
    for own in ("u0", "u3", "u6", "not-in-manifest"):
        by_list = babble_pool_for(own, utterances, load)(4, np.random.default_rng(11))
        by_position = babble_pool_for(own, candidates, load)(4, np.random.default_rng(11))
        assert len(by_list) == 4 and all(np.array_equal(a, b) for a, b in zip(by_list, by_position, strict=True))
        own_audio = load(utterances[int(own[1:])]) if own != "not-in-manifest" else None
        assert own_audio is None or not any(np.array_equal(own_audio, a) for a in by_position)  # never the utterance itself


def test_the_audio_cache_is_bounded(tmp_path):
    utterances = [Utterance(id=f"u{i}", text="x", audio=path) for i, path in enumerate(tone_files(tmp_path, 5))]
    load = AudioLoader(16000, cache_size=2)
    first = load(utterances[0])
    assert load(utterances[0]) is first  # decoded once while cached
    for utterance in utterances[1:]:
        load(utterance)
    assert len(load._cache) == 2 and load(utterances[0]) is not first  # evicted, decoded again


NOISE_RECORDS = """
import json, sys
import numpy as np
from harness.noise import apply_profile, load_profile, prepare
from harness.seeding import rng_for
rate = 16000
speech = (0.3 * np.sin(np.arange(5 * rate) / 7.0) * np.hanning(5 * rate)).astype(np.float32)
out = []
for name, snr in (("white", 5.0), ("reverberant-room", None), ("pink", 0.0)):
    profile = prepare(load_profile(name), rate)
    audio, records = apply_profile(profile, speech.copy(), rate, snr_db=snr, rng=rng_for(1, "u1", name))
    out.append([records, float(np.sum(audio.astype(np.float64)))])
print(json.dumps(out))
"""


def test_noise_does_not_depend_on_how_many_threads_the_machine_gives_numpy():
    """A Ray task runs with one BLAS thread, the driver with one per core: the same draw must give
    the same audio and the same records, to the last bit."""
    outputs = []
    for threads in ("1", str(max(2, os.cpu_count() or 2))):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        outputs.append(subprocess.run([sys.executable, "-c", NOISE_RECORDS], env=env, capture_output=True, text=True, check=True).stdout)
    assert json.loads(outputs[0]) and outputs[0] == outputs[1]


def test_a_unit_is_prepared_the_same_in_any_batch(tmp_path):
    from harness.executors import Job
    from harness.noise import load_profile, prepare
    from harness.pipeline import WorkSpec, prepare_unit
    from harness.runner import Condition

    utterances = [Utterance(id=f"u{i}", text="x", audio=path, speaker="s") for i, path in enumerate(tone_files(tmp_path, 4))]
    table = utterances_table(utterances)
    conditions = (Condition(), Condition(name="white", snr_db=10.0, profile=prepare(load_profile("white"), 16000)))
    spec = WorkSpec(conditions=conditions, normalizer="basic", seed=5, sample_rate_hz=16000, batch_size=2, tag_names=())
    rows, conds = np.repeat(np.arange(4), 2), np.tile(np.arange(2), 4)
    job = Job(manifest=table, rows=rows, condition_indices=conds.astype(np.int32), spec=spec, candidates=BabbleCandidates.of(table))
    whole = prepare_unit(job.unit(0, 8), spec, AudioLoader(16000), job.candidates)
    reversed_rows = Job(manifest=table, rows=rows[::-1].copy(), condition_indices=conds[::-1].astype(np.int32), spec=spec, candidates=job.candidates)
    backwards = [prepare_unit(reversed_rows.unit(i, i + 1), spec, AudioLoader(16000), job.candidates) for i in range(8)]
    for i in range(8):
        other = backwards[7 - i]
        assert np.array_equal(whole.samples[i], other.samples[0]) and whole.noise[i] == other.noise[0]
    assert whole.noise[0] is None and whole.noise[1] is not None and whole.noise[1] != whole.noise[3]
    assert isinstance(job.unit(0, 8), pa.Table) and job.unit(0, 8).column("condition_index").to_pylist() == [0, 1] * 4
