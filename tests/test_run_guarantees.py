"""The runner's guarantees, each tested where a user meets it (the rows a run stores):

- every utterance draws its own noise, keyed by (run seed, utterance id, condition): utterances with
  identical audio get different noise, and an utterance gets the same noise whatever the manifest
  order, batch size, number of preparation threads, and across a resume or a retry;
- no (utterance_id, condition_key) is ever stored twice, through interruptions, resumes and retries;
- a resumed run sends nothing that was finished before.

The backend is a probe: its transcript is a fingerprint of the exact samples the runner handed it,
so the stored hypotheses say which audio each row was transcribed from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile

from harness.backends.base import Backend, PermanentError, RetryableError
from harness.manifest import load_manifest
from harness.noise import load_profile
from harness.report.data import load_run
from harness.rundir import EXPORT_FILE
from harness.runner import build_conditions, run_evaluation
from harness.seeding import seed_for
from harness.store import RESULTS_FILE, ResultStore
from tests.conftest import speechlike

SEED = 11


class Fingerprints(Backend):
    """Answers each request with a hash of its samples; fails the (utterance, condition) pairs it is told to."""

    name = "fingerprints"
    sample_rate_hz = 16000

    def __init__(self, fail: dict[tuple[str, str], type] | None = None):
        self.fail = fail or {}
        self.sent: list[tuple[str, str]] = []

    def transcribe(self, batch):
        answers = []
        for request in batch:
            key = (request.utterance_id, request.condition)
            self.sent.append(key)
            if key in self.fail:
                answers.append(self.fail[key]("engine busy", attempts=1))
            else:
                answers.append(hashlib.sha256(np.ascontiguousarray(request.samples, dtype=np.float32).tobytes()).hexdigest()[:20])
        return answers

    def describe(self):
        return {}


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> Path:
    """Six utterances, three pairs with identical audio (one pair the same file, two pairs a WAV and a
    FLAC copy of the same samples), from six speakers."""
    root = tmp_path_factory.mktemp("twins")
    rng = np.random.default_rng(3)
    lines = []
    for name, f0_hz in (("a", 110.0), ("b", 180.0), ("c", 240.0)):
        # As integers, so that WAV and FLAC hold the same samples (their float conversions round differently).
        samples = np.round(32767 * speechlike(rng, duration_s=1.0, rate_hz=16000, f0_hz=f0_hz, n_syllables=3)).astype(np.int16)
        soundfile.write(root / f"{name}.wav", samples, 16000, subtype="PCM_16")
        soundfile.write(root / f"{name}.flac", samples, 16000, subtype="PCM_16")
        second = f"{name}.wav" if name == "a" else f"{name}.flac"
        lines += [{"id": f"{name}1", "audio": f"{name}.wav", "text": "one two three", "speaker": f"{name}-x"},
                  {"id": f"{name}2", "audio": second, "text": "one two three", "speaker": f"{name}-y"}]
    (root / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / "reversed.jsonl").write_text("".join(json.dumps(line) + "\n" for line in reversed(lines)))
    return root


def noisy_conditions():
    return build_conditions([load_profile("white"), load_profile("pink")], [10.0, 0.0])


def stored(run_dir: Path) -> dict[tuple[str, str], dict]:
    """The run's rows by key, after checking that no key is held twice: in the store, in the report's
    view of the run, and in the exported Parquet when the run is complete."""
    table = ResultStore(run_dir / RESULTS_FILE, readonly=True).read_table()
    keys = list(zip(table.column("utterance_id").to_pylist(), table.column("condition_key").to_pylist()))
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    frame = load_run(run_dir).frame
    assert not frame.duplicated(["utterance_id", "condition_key"]).any()
    assert len(frame) == len(keys)
    if (run_dir / EXPORT_FILE).exists():
        export = pq.read_table(run_dir / EXPORT_FILE, columns=["utterance_id", "condition_key"]).to_pylist()
        assert sorted((r["utterance_id"], r["condition_key"]) for r in export) == sorted(keys)
    return {key: row for key, row in zip(keys, table.to_pylist(), strict=True)}


def run(manifest_path: Path, out: Path, backend: Backend | None = None, **options):
    backend = backend if backend is not None else Fingerprints()
    return run_evaluation(load_manifest(manifest_path), backend, out_dir=out, seed=SEED, conditions=noisy_conditions(), **options)


def hypotheses(rows: dict) -> dict[tuple[str, str], str]:
    return {key: row["hypothesis"] for key, row in rows.items()}


# ----------------------------------------------------------------------------------- noise seeding


def test_identical_audio_gets_different_noise_and_each_utterance_its_own_seed(tmp_path, twins):
    run(twins / "m.jsonl", tmp_path / "run", batch_size=4)
    rows = stored(tmp_path / "run")
    assert len(rows) == 6 * 5 and all(row["status"] == "ok" for row in rows.values())
    for name in "abc":
        # Clean, the twins reach the backend as the same samples ...
        assert rows[(f"{name}1", "clean")]["hypothesis"] == rows[(f"{name}2", "clean")]["hypothesis"]
    noisy = {key: row["hypothesis"] for key, row in rows.items() if key[1] != "clean"}
    # ... under noise, every (utterance, condition) got noise of its own: no two fingerprints agree.
    assert len(set(noisy.values())) == len(noisy) == 6 * 4
    for (uid, key), row in rows.items():
        if key == "clean":
            assert row["noise_json"] is None
        else:
            # Provenance: the seed recorded is the one derived from (run seed, utterance, condition).
            assert json.loads(row["noise_json"])[0]["seed"] == seed_for(SEED, uid, key)


def test_noise_does_not_depend_on_order_batch_threads_or_resume(tmp_path, twins):
    run(twins / "m.jsonl", tmp_path / "base", batch_size=4, prep_workers=2)
    expected = hypotheses(stored(tmp_path / "base"))
    run(twins / "reversed.jsonl", tmp_path / "reversed", batch_size=1, prep_workers=1)
    assert hypotheses(stored(tmp_path / "reversed")) == expected
    run(twins / "m.jsonl", tmp_path / "wide", batch_size=7, prep_workers=3, prefetch_batches=1)
    assert hypotheses(stored(tmp_path / "wide")) == expected
    # Stopped after its first unit of three rows, then resumed with other batches and threads.
    first = run(twins / "m.jsonl", tmp_path / "resumed", batch_size=3, stop_requested=lambda: True)
    assert (first.n_written, first.stopped_early) == (3, True)
    second = run(twins / "m.jsonl", tmp_path / "resumed", batch_size=5, prep_workers=1, resume=True)
    assert (second.n_done_before, second.n_written) == (3, 27)
    assert hypotheses(stored(tmp_path / "resumed")) == expected


# ------------------------------------------------------------- no duplicates, no work done twice


def test_interrupted_resumed_and_retried_runs_store_each_row_once_and_redo_nothing(tmp_path, twins):
    conditions = build_conditions([load_profile("white")], [10.0])
    out = tmp_path / "run"
    manifest = load_manifest(twins / "m.jsonl")

    def session(backend, **options):
        return run_evaluation(manifest, backend, out_dir=out, seed=SEED, conditions=conditions, batch_size=2, **options)

    retryable = {("a2", "clean"): RetryableError, ("b1", "white@10dB"): RetryableError}
    failing = {**retryable, ("c1", "clean"): PermanentError}
    # 1: interrupted after two units (a1 and a2 under both conditions; a2 clean failed, retryable).
    first_backend = Fingerprints(failing)
    first = session(first_backend, stop_requested=lambda: len(first_backend.sent) >= 4)
    assert (first.n_written, first.stopped_early) == (4, True)
    after_first = stored(out)
    assert set(after_first) == {("a1", "clean"), ("a1", "white@10dB"), ("a2", "clean"), ("a2", "white@10dB")}
    assert after_first[("a2", "clean")]["failure"] == "retryable"

    # 2: resumed with the engine still failing: the retryable row is sent again (and fails again), the
    # rest is done, and nothing finished before is sent again.
    second_backend = Fingerprints(failing)
    second = session(second_backend, resume=True)
    assert sorted(second_backend.sent) == sorted({("a2", "clean")} | {(f"{n}{i}", c) for n in "bc" for i in "12" for c in ("clean", "white@10dB")})
    assert (second.n_done_before, second.n_written, second.n_retried) == (3, 9, 1)
    after_second = stored(out)
    assert len(after_second) == 12 and {k for k, r in after_second.items() if r["status"] == "failed"} == set(failing)

    # 3: resumed with a healthy engine: exactly the two retryable rows are sent, and replace their failures.
    third_backend = Fingerprints()
    third = session(third_backend, resume=True)
    assert sorted(third_backend.sent) == sorted(retryable)
    assert (third.n_written, third.n_retried, third.n_failed) == (2, 2, 0)
    final = stored(out)
    assert len(final) == 12 and [k for k, r in final.items() if r["status"] == "failed"] == [("c1", "clean")]
    with ResultStore(out / RESULTS_FILE, readonly=True) as store:
        assert store.count() == 12
    record = json.loads((out / "run.json").read_text())
    assert [s["written"] for s in record["sessions"]] == [4, 9, 2] and record["status"] == "complete"

    # The retried rows hold what a run that never failed gets, noise included.
    run_evaluation(manifest, Fingerprints(), out_dir=tmp_path / "straight", seed=SEED, conditions=conditions, batch_size=4)
    straight = stored(tmp_path / "straight")
    for key in retryable:
        assert final[key]["hypothesis"] == straight[key]["hypothesis"]
