"""The runner's core against values a wrong implementation gets wrong: what is planned, how each row is
prepared and seeded, how a batch's failures stay alone, what a scored row holds.

Audio is generated with numpy and soundfile; the backends are small real Backend subclasses whose
answers follow from their input, so every expected value here is computed another way.
"""

import json

import numpy as np
import pyarrow as pa
import pytest
import soundfile

from harness.backends.base import Backend, FatalBackendError, PermanentError, RetryableError, Transcript
from harness.errors import ConfigError
from harness.executors import Job
from harness.manifest import Manifest, Utterance, utterances_table
from harness.noise import load_profile, prepare
from harness.pipeline import (
    AudioLoader,
    BabbleCandidates,
    PreparedUnit,
    WorkSpec,
    babble_pool_for,
    prepare_unit,
    reference_too_long,
    run_unit,
    score_unit,
    transcribe_unit,
    work_utterances,
)
from harness.runner import Condition, _count_cached, _count_failed, _count_in, _open_run, _sum_stats, build_conditions, plan_work
from harness.seeding import rng_for, seed_for
from harness.store import RESULTS_FILE, ResultStore, result_schema, row_keys

RATE = 16000


def tone(path, n_samples, frequency):
    soundfile.write(path, (0.2 * np.sin(np.arange(n_samples) * frequency / RATE * 2 * np.pi)).astype(np.float32), RATE)
    return path


class Words(Backend):
    """Says how long the audio is, in tenths of a second, as words: 1600 samples -> "one"."""

    name = "words"
    sample_rate_hz = RATE
    NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

    def __init__(self, *, fail=(), crash=(), fatal=(), notes=()):
        self.batches = []
        self.fail, self.crash, self.fatal, self.notes_for = dict(fail), set(crash), set(fatal), set(notes)

    def transcribe(self, batch):
        ids = [request.utterance_id for request in batch]
        self.batches.append(ids)
        if self.fatal & set(ids):
            raise FatalBackendError("credentials refused")
        if self.crash & set(ids):
            raise ValueError(f"engine crashed on {sorted(self.crash & set(ids))}")
        out = []
        for request in batch:
            if request.utterance_id in self.fail:
                error = self.fail[request.utterance_id]
                out.append(error)
            elif request.utterance_id in self.notes_for:
                out.append(Transcript(text="", latency_s=0.25, attempts=3, note="no hypothesis"))
            else:
                out.append(self.NAMES[round(len(request.samples) / (request.sample_rate_hz / 10)) % 10])
        return out

    def describe(self):
        return {}


def manifest_of(tmp_path, lengths, *, texts=None, tags=None):
    utterances = []
    for i, n_samples in enumerate(lengths):
        audio = None if n_samples is None else tone(tmp_path / f"a{i}.wav", n_samples, 200 + 50 * i)
        utterances.append(Utterance(id=f"u{i}", text=(texts or {}).get(i, "one"), audio=audio, speaker=f"s{i % 2}", tags=(tags or {}).get(i, {})))
    return Manifest.from_utterances(utterances, source="test", sha256="0" * 64, format="jsonl")


def spec_of(conditions=(Condition(),), *, seed=3, batch_size=16, tag_names=(), max_reference_words=None, rate=RATE):
    return WorkSpec(conditions=tuple(conditions), normalizer="basic", seed=seed, sample_rate_hz=rate, batch_size=batch_size, tag_names=tuple(tag_names), max_reference_words=max_reference_words)


def unit_of(manifest, spec, rows, condition_indices):
    job = Job(manifest=manifest.table, rows=np.asarray(rows, dtype=np.int64), condition_indices=np.asarray(condition_indices, dtype=np.int32), spec=spec, candidates=BabbleCandidates.of(manifest.table))
    return job.unit(0, len(rows)), job.candidates


# -- limits ------------------------------------------------------------------------------------


def test_a_reference_longer_than_the_limit_fails_with_its_word_count():
    assert reference_too_long("a b c", 3) is None and reference_too_long("a b c", None) is None and reference_too_long("a b c", 0) is None
    message = reference_too_long("a  b c d", 3)
    assert message == ("reference has 4 words, more than the limit of 3 per utterance: aligning it would take memory in proportion "
                       "to its length times the hypothesis's. Split the utterance, or raise --max-reference-words.")
    assert reference_too_long("abcdefgh", 3) is None  # many characters, one word
    assert reference_too_long("a b c", 2) == reference_too_long(" a\tb\nc ", 2)  # any white space splits words


# -- conditions and planning -------------------------------------------------------------------


def test_conditions_are_clean_then_each_profile_at_each_snr():
    white, telephone = load_profile("white"), load_profile("telephone")
    conditions = build_conditions([white, telephone], [10, 0.5])
    assert [c.key for c in conditions] == ["clean", "white@10dB", "white@0.5dB", "telephone"]
    assert [c.snr_db for c in conditions] == [None, 10.0, 0.5, None] and isinstance(conditions[1].snr_db, float)
    assert conditions[0].profile is None and conditions[1].profile is white and conditions[3].profile is telephone
    assert [c.key for c in build_conditions([], [])] == ["clean"]
    assert [c.key for c in build_conditions([telephone], [])] == ["clean", "telephone"]
    with pytest.raises(ConfigError) as error:
        build_conditions([telephone, load_profile("clipping")], [10, 2.5])
    assert str(error.value) == (
        "--snr 10,2.5 is given, but no profile adds noise at an SNR ('telephone', 'clipping' do not), so it would be ignored. "
        "Add a noise profile, e.g. --profile pink --snr 20,10,0 (see `asrfair noise list`), or drop --snr."
    )
    with pytest.raises(ConfigError) as error:
        build_conditions([], [10])
    assert str(error.value).startswith("--snr 10 is given, but no --profile is, so it would be ignored. Add a noise profile")
    with pytest.raises(ConfigError, match="profile 'white' adds noise at an SNR"):
        build_conditions([white], [])
    with pytest.raises(ConfigError, match="conditions repeat"):
        build_conditions([white, white], [10])


def test_a_condition_describes_itself_by_key():
    white = load_profile("white")
    assert Condition().key == "clean" and Condition(name="ignored").key == "clean"
    assert Condition(name="white", snr_db=-5.0, profile=white).key == "white@-5dB"
    assert Condition(name="white", snr_db=-5.0, profile=white).describe()["key"] == "white@-5dB"


def stored(tmp_path, entries):
    """A store holding (utterance, condition, status, failure) rows."""
    store = ResultStore(tmp_path / RESULTS_FILE, schema=result_schema(), commit_rows=1)
    store.write_batch([{"utterance_id": u, "condition_key": c, "status": s, "failure": f} for u, c, s, f in entries])
    return store


def test_planning_leaves_out_exactly_what_is_stored_and_retries_only_retryable_failures(tmp_path):
    manifest = manifest_of(tmp_path, [None] * 4)
    white = load_profile("white")
    conditions = [Condition(), Condition(name="white", snr_db=10.0, profile=white), Condition(name="white", snr_db=0.0, profile=white)]
    store = stored(tmp_path, [
        ("u0", "clean", "ok", None), ("u2", "clean", "failed", "permanent"), ("u1", "white@10dB", "failed", "retryable"),
        ("u3", "white@0dB", "ok", None), ("u3", "white@10dB", "failed", "retryable"), ("gone", "clean", "ok", None),
    ])
    rows, condition_indices, retrying = plan_work(manifest, conditions, store)
    assert rows.dtype == np.int64 and condition_indices.dtype == np.int32
    planned = list(zip(rows.tolist(), condition_indices.tolist()))
    # Utterance by utterance, conditions in order; done items and permanent failures are not planned.
    assert planned == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2), (3, 0), (3, 1)]
    assert sorted(retrying.to_pylist()) == ["u1\x1fwhite@10dB", "u3\x1fwhite@10dB"]
    rows, condition_indices, retrying = plan_work(manifest, conditions, store, retry_failed=False)
    assert list(zip(rows.tolist(), condition_indices.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 1), (2, 2), (3, 0)]
    assert len(retrying) == 0
    store.close()


def test_planning_an_empty_store_plans_everything(tmp_path):
    manifest = manifest_of(tmp_path, [None] * 3)
    store = ResultStore(tmp_path / RESULTS_FILE, schema=result_schema())
    rows, condition_indices, retrying = plan_work(manifest, [Condition(), Condition(name="telephone", profile=load_profile("telephone"))], store)
    assert rows.tolist() == [0, 0, 1, 1, 2, 2] and condition_indices.tolist() == [0, 1, 0, 1, 0, 1] and len(retrying) == 0
    store.close()


def test_session_counts():
    table = pa.table({"utterance_id": ["a", "b", "c", "d"], "condition_key": ["clean", "clean", "x", "clean"],
                      "status": ["ok", "failed", "failed", "ok"], "attempts": pa.array([0, 1, None, 0], type=pa.int64())})
    assert _count_failed(table) == 2 and _count_cached(table) == 2
    assert _count_failed(table.slice(0, 1)) == 0 and _count_cached(table.slice(1, 2)) == 0
    assert row_keys(table).to_pylist() == ["a\x1fclean", "b\x1fclean", "c\x1fx", "d\x1fclean"]
    assert _count_in(table, pa.array(["b\x1fclean", "c\x1fclean", "d\x1fclean"])) == 2
    assert _count_in(table, pa.chunked_array([["c\x1fx"], ["a\x1fclean"]])) == 2
    assert _count_in(table, pa.array([], type=pa.string())) == 0 and _count_in(table, pa.array(["a\x1fx"])) == 0


def test_backend_stats_add_up_over_sessions_key_by_key():
    sessions = [{"requests": 3, "latency_s": 0.5, "failures": {"retryable": 1}, "busy": True, "model": "a"},
                {"requests": 4, "failures": {"retryable": 2, "permanent": 1}, "busy": False}, {}]
    assert _sum_stats(sessions) == {"requests": 7, "latency_s": 0.5, "failures": {"retryable": 3, "permanent": 1}}
    assert _sum_stats([]) == {}


def test_a_run_resumes_only_with_the_same_configuration(tmp_path):
    config = {"manifest": {"sha256": "ab"}, "backend": {"name": "words"}, "seed": 1}
    record = _open_run(tmp_path, config, resume=False)
    assert record["status"] == "running" and record["seed"] == 1 and record["backend"] == {"name": "words"} and "environment" in record
    (tmp_path / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    with pytest.raises(ConfigError, match="already holds a run"):
        _open_run(tmp_path, config, resume=False)
    assert _open_run(tmp_path, config, resume=True)["status"] == "interrupted"
    from importlib import metadata

    assert record["asrfair_version"] == metadata.version("asrfair") and record["created_at"].endswith("+00:00")
    with pytest.raises(ConfigError) as error:
        _open_run(tmp_path, {**config, "seed": 2}, resume=True)
    assert str(error.value) == (
        f"{tmp_path / 'run.json'}: field 'seed' differs from this invocation (run has 1, now 2). "
        "Resume only with the same manifest, backend, normaliser, seed and conditions, or start a new --out directory."
    )
    with pytest.raises(ConfigError, match=r"\(run has \{\"sha256\": \"ab\"\}, now \"x{199}\)"):
        _open_run(tmp_path, {**config, "manifest": "x" * 300}, resume=True)
    with pytest.raises(ConfigError, match="field 'normalizer' differs"):
        _open_run(tmp_path, {**config, "normalizer": "ascii"}, resume=True)
    (tmp_path / "run.json").write_text(json.dumps({**record, "manifest": "y" * 300}))
    with pytest.raises(ConfigError, match=r"\(run has \"y{199}, now \{\"sha256\": \"ab\"\}\)"):
        _open_run(tmp_path, config, resume=True)


# -- preparation and seeding -------------------------------------------------------------------


def test_work_rows_become_utterances_with_their_tags(tmp_path):
    manifest = manifest_of(tmp_path, [1600, None], texts={1: "two words"}, tags={0: {"accent": "us"}, 1: {"age": "30"}})
    unit, _ = unit_of(manifest, spec_of(), [1, 0], [0, 0])
    first, second = work_utterances(unit)
    assert (first.id, first.text, first.audio, first.speaker, dict(first.tags)) == ("u1", "two words", None, "s1", {"age": "30"})
    assert (second.id, str(second.audio), dict(second.tags)) == ("u0", str(tmp_path / "a0.wav"), {"accent": "us"})


def test_each_row_is_prepared_under_its_condition_with_its_own_seed(tmp_path):
    manifest = manifest_of(tmp_path, [1600, 3200, 4800])
    white = prepare(load_profile("white"), RATE)
    conditions = (Condition(), Condition(name="white", snr_db=5.0, profile=white))
    spec = spec_of(conditions, seed=11)
    unit, candidates = unit_of(manifest, spec, [0, 0, 1, 2], [0, 1, 1, 0])
    prepared = prepare_unit(unit, spec, AudioLoader(RATE), candidates)
    assert prepared.errors == [None] * 4
    assert prepared.durations_s == [0.1, 0.1, 0.2, 0.3]
    assert prepared.seeds() == [None, seed_for(11, "u0", "white@5dB"), seed_for(11, "u1", "white@5dB"), None]
    clean = soundfile.read(tmp_path / "a0.wav", dtype="float32")[0]
    assert np.array_equal(prepared.samples[0], clean) and prepared.noise[0] is None and prepared.noise[3] is None
    # The noisy row is the clean audio plus noise drawn from the row's own generator.
    from harness.noise import apply_profile

    expected, records = apply_profile(white, clean.copy(), RATE, snr_db=5.0, rng=rng_for(11, "u0", "white@5dB"))
    assert np.array_equal(prepared.samples[1], expected)
    assert json.loads(prepared.noise[1]) == json.loads(json.dumps([{"seed": seed_for(11, "u0", "white@5dB")}, *records], sort_keys=True))
    assert json.loads(prepared.noise[2])[0] == {"seed": seed_for(11, "u1", "white@5dB")} and prepared.noise[1] != prepared.noise[2]
    # Another run seed draws other noise for the same row.
    other = prepare_unit(unit, spec_of(conditions, seed=12), AudioLoader(RATE), candidates)
    assert not np.array_equal(other.samples[1], prepared.samples[1]) and np.array_equal(other.samples[0], prepared.samples[0])


def test_a_row_that_cannot_be_prepared_fails_alone_with_the_reason(tmp_path):
    manifest = manifest_of(tmp_path, [1600, None, 1600, 1600], texts={2: "far too many words here"})
    (tmp_path / "a3.wav").write_bytes(b"RIFF, but not audio" * 4)
    spec = spec_of(max_reference_words=3)
    unit, candidates = unit_of(manifest, spec, [0, 1, 2, 3], [0, 0, 0, 0])
    prepared = prepare_unit(unit, spec, AudioLoader(RATE), candidates)
    assert prepared.errors[0] is None and prepared.samples[0] is not None and prepared.durations_s[0] == 0.1
    assert prepared.errors[1] == "utterance 'u1' has no audio. Add an audio path to the manifest."
    assert prepared.errors[2].startswith("reference has 5 words, more than the limit of 3") and prepared.samples[2] is None
    assert "a3.wav" in prepared.errors[3] and prepared.samples[3] is None and prepared.durations_s[1:] == [None, None, None]
    # Without audio to prepare (replay) only the reference limit applies.
    bare = prepare_unit(unit, spec, None, candidates)
    assert bare.samples == [None] * 4 and bare.errors == [None, None, prepared.errors[2], None] and bare.seeds() == [None] * 4


def test_a_noise_failure_names_the_condition(tmp_path):
    manifest = manifest_of(tmp_path, [1600])
    babble = prepare(load_profile("babble"), RATE)
    condition = Condition(name="babble", snr_db=0.0, profile=babble)
    spec = spec_of((condition,))
    unit, candidates = unit_of(manifest, spec, [0], [0])
    prepared = prepare_unit(unit, spec, AudioLoader(RATE), candidates)
    assert prepared.errors[0].startswith("condition babble@0dB: babble needs other utterances") and prepared.samples[0] is None
    assert prepared.durations_s == [0.1] and prepared.noise == [None]


def test_babble_never_draws_the_utterance_itself_and_draws_by_position(tmp_path):
    manifest = manifest_of(tmp_path, [1600, 3200, 4800, None, 6400])
    candidates = BabbleCandidates.of(manifest.table)
    assert len(candidates) == 4 and candidates.position("u4") == 3 and candidates.position("u3") is None
    assert candidates.utterance(1).id == "u1" and str(candidates.utterance(1).audio) == str(tmp_path / "a1.wav")
    load = AudioLoader(RATE)
    for own, others in (("u0", [3200, 4800, 6400]), ("u4", [1600, 3200, 4800]), ("u3", [1600, 3200, 4800, 6400])):
        drawn = babble_pool_for(own, candidates, load)(10, np.random.default_rng(0))
        assert sorted(len(samples) for samples in drawn) == others
        rng = np.random.default_rng(5)
        picks = rng.choice(len(others), size=2, replace=False)
        assert [len(samples) for samples in babble_pool_for(own, candidates, load)(2, np.random.default_rng(5))] == [others[i] for i in picks]


# -- transcription -----------------------------------------------------------------------------


def prepared_of(tmp_path, lengths, spec, **kwargs):
    manifest = manifest_of(tmp_path, lengths, **kwargs)
    unit, candidates = unit_of(manifest, spec, list(range(len(lengths))), [0] * len(lengths))
    return prepare_unit(unit, spec, AudioLoader(RATE), candidates)


def test_batches_are_cut_at_the_batch_size_and_only_prepared_rows_are_sent(tmp_path):
    spec = spec_of(batch_size=3)
    prepared = prepared_of(tmp_path, [1600, 3200, None, 4800, 1600, 3200, 1600, 4800], spec)
    backend = Words()
    out = transcribe_unit(prepared, backend, spec)
    assert backend.batches == [["u0", "u1", "u3"], ["u4", "u5", "u6"], ["u7"]]
    assert out.texts == ["one", "two", None, "three", "one", "two", "one", "three"]
    assert out.failures[2] == out.messages[2] == prepared.errors[2] and out.kinds == [None, None, "permanent", None, None, None, None, None]
    assert out.messages[0] is None and out.latency_s == [None] * 8 and out.attempts == [None] * 8


def test_a_crashing_utterance_fails_alone_as_retryable(tmp_path):
    spec = spec_of(batch_size=4)
    prepared = prepared_of(tmp_path, [1600, 3200, 4800, 1600, 3200], spec)
    backend = Words(crash={"u1"})
    out = transcribe_unit(prepared, backend, spec)
    assert backend.batches == [["u0", "u1", "u2", "u3"], ["u0"], ["u1"], ["u2"], ["u3"], ["u4"]]
    assert out.texts == ["one", None, "three", "one", "two"]
    assert out.failures[1] == out.messages[1] == "backend 'words' failed: ValueError: engine crashed on ['u1']"
    assert out.kinds == [None, "retryable", None, None, None] and out.failures[0] is None and out.failures[2] is None


def test_each_failure_keeps_its_kind_attempts_and_latency(tmp_path):
    spec = spec_of(batch_size=8)
    prepared = prepared_of(tmp_path, [1600, 3200, 4800, 1600], spec)
    backend = Words(fail={"u0": RetryableError("rate limited", attempts=4, latency_s=1.5), "u2": PermanentError("rejected", attempts=1)}, notes={"u3"})
    out = transcribe_unit(prepared, backend, spec)
    assert backend.batches == [["u0", "u1", "u2", "u3"]]
    assert out.failures == ["backend 'words': rate limited", None, "backend 'words': rejected", None]
    assert out.messages == ["backend 'words': rate limited", None, "backend 'words': rejected", "no hypothesis"]
    assert out.kinds == ["retryable", None, "permanent", None]
    assert out.attempts == [4, None, 1, 3] and out.latency_s == [1.5, None, None, 0.25] and out.texts == [None, "two", None, ""]


def test_a_fatal_error_stops_the_unit(tmp_path):
    spec = spec_of(batch_size=2)
    prepared = prepared_of(tmp_path, [1600, 1600, 1600], spec)
    with pytest.raises(FatalBackendError):
        transcribe_unit(prepared, Words(fatal={"u2"}), spec)


class Miscounts(Words):
    name = "miscounts"

    def transcribe(self, batch):
        answer = super().transcribe(batch)
        return answer[:1] if len(batch) > 1 else answer


class Numbers(Words):
    name = "numbers"

    def transcribe(self, batch):
        return [7 for _ in batch]


def test_a_batch_answered_with_the_wrong_count_is_redone_one_by_one(tmp_path):
    spec = spec_of(batch_size=3)
    prepared = prepared_of(tmp_path, [1600, 3200, 4800], spec)
    backend = Miscounts()
    out = transcribe_unit(prepared, backend, spec)
    assert backend.batches == [["u0", "u1", "u2"], ["u0"], ["u1"], ["u2"]] and out.texts == ["one", "two", "three"]
    bad = transcribe_unit(prepared, Numbers(), spec)
    assert bad.failures[0] == "backend 'numbers' failed: HarnessError: backend 'numbers' returned int for utterance 'u0'; expected a string, a Transcript or a TranscriptionError"
    assert bad.kinds == ["retryable"] * 3


def test_cached_transcripts_are_not_sent_again(tmp_path):
    from harness.cache import TranscriptCache

    spec = spec_of(batch_size=2)
    prepared = prepared_of(tmp_path, [1600, 3200, 4800], spec)
    backend = Words(notes={"u2"})
    cache = TranscriptCache(tmp_path / "cache.sqlite")
    first = transcribe_unit(prepared, backend, spec, cache.scope(backend))
    assert backend.batches == [["u0", "u1"], ["u2"]] and first.attempts == [None, None, 3]
    backend.batches.clear()
    second = transcribe_unit(prepared, backend, spec, cache.scope(backend))
    # u2's transcript carried a note (no hypothesis): it is never cached, so it is asked again.
    assert backend.batches == [["u2"]] and second.texts == ["one", "two", ""] and second.attempts == [0, 0, 3]
    cache.close()


def test_run_unit_takes_transcripts_from_the_cache(tmp_path):
    from harness.cache import TranscriptCache

    spec = spec_of(batch_size=2)
    prepared = prepared_of(tmp_path, [1600, 3200, 4800], spec)
    backend = Words(notes={"u2"})
    cache = TranscriptCache(tmp_path / "cache.sqlite")
    run_unit(prepared, backend, spec, cache.scope(backend))
    backend.batches.clear()
    table = run_unit(prepared, backend, spec, cache.scope(backend))
    assert backend.batches == [["u2"]] and table.column("attempts").to_pylist() == [0, 0, 3] and table.column("hypothesis").to_pylist() == ["one", "two", ""]
    cache.close()


# -- scoring -----------------------------------------------------------------------------------


def test_scored_rows_hold_counts_and_failed_rows_hold_none(tmp_path):
    white = prepare(load_profile("white"), RATE)
    conditions = (Condition(), Condition(name="white", snr_db=20.0, profile=white))
    spec = spec_of(conditions, batch_size=8, tag_names=("accent", "age"))
    manifest = manifest_of(tmp_path, [1600, 3200, None, 1600], texts={0: "One", 1: "one two", 2: "x", 3: "one"}, tags={0: {"accent": "us"}, 1: {"accent": "in"}})
    unit, candidates = unit_of(manifest, spec, [0, 1, 2, 3], [0, 0, 0, 1])
    prepared = prepare_unit(unit, spec, AudioLoader(RATE), candidates)
    table = run_unit(prepared, Words(), spec)
    assert table.schema.equals(result_schema(["accent", "age"]))
    rows = table.to_pylist()
    assert [r["utterance_id"] for r in rows] == ["u0", "u1", "u2", "u3"]
    assert [r["condition_key"] for r in rows] == ["clean", "clean", "clean", "white@20dB"] and rows[3]["condition"] == "white"
    assert [r["snr_db"] for r in rows] == [None, None, None, 20.0]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok"]
    assert [r["hypothesis"] for r in rows] == ["one", "two", None, "one"]
    assert [r["reference_normalized"] for r in rows] == ["one", "one two", None, "one"]
    assert [r["hypothesis_normalized"] for r in rows] == ["one", "two", None, "one"]
    # "one two" -> "two": one deletion and one substitution or a hit; counted by the scorer, checked here by hand.
    assert [(r["ref_words"], r["hits"], r["substitutions"], r["deletions"], r["insertions"], r["errors"]) for r in rows] == [
        (1, 1, 0, 0, 0, 0), (2, 1, 0, 1, 0, 1), (None,) * 6, (1, 1, 0, 0, 0, 0)]
    assert [r["hyp_words"] for r in rows] == [1, 1, None, 1] and [r["ref_chars"] for r in rows] == [3, 7, None, 3]
    assert rows[2]["error"] == "utterance 'u2' has no audio. Add an audio path to the manifest." and rows[2]["failure"] == "permanent"
    assert [r["tag.accent"] for r in rows] == ["us", "in", None, None] and [r["tag.age"] for r in rows] == [None] * 4
    assert [r["speaker"] for r in rows] == ["s0", "s1", "s0", "s1"] and [r["reference"] for r in rows] == ["One", "one two", "x", "one"]
    assert [r["audio_duration_s"] for r in rows] == [0.1, 0.2, None, 0.1]
    assert rows[0]["noise_json"] is None and json.loads(rows[3]["noise_json"])[0] == {"seed": seed_for(3, "u3", "white@20dB")}


def test_a_unit_with_every_row_scored(tmp_path):
    spec = spec_of(batch_size=8)
    prepared = prepared_of(tmp_path, [1600, 4800], spec, texts={0: "one", 1: "one two three"})
    table = run_unit(prepared, Words(), spec)
    assert table.schema.equals(spec.schema)  # the declared types, even for a column of nothing but nulls
    assert table.column("status").to_pylist() == ["ok", "ok"] and table.column("errors").to_pylist() == [0, 2]
    assert table.column("hits").to_pylist() == [1, 1] and table.column("deletions").to_pylist() == [0, 2]
    assert table.column("hypothesis").to_pylist() == ["one", "three"] and table.column("error").to_pylist() == [None, None]
    assert table.column("errors").null_count == 0


def test_score_unit_of_a_replayed_unit_has_no_durations(tmp_path):
    spec = spec_of(rate=None)
    manifest = manifest_of(tmp_path, [None, None], texts={0: "a b", 1: "c"})
    unit, _ = unit_of(manifest, spec, [0, 1], [0, 0])
    prepared = PreparedUnit(work=unit, samples=[None, None], errors=[None, None], durations_s=[None, None], noise=[None, None])
    from harness.pipeline import Transcribed

    transcribed = Transcribed(texts=["a", None], messages=[None, "lost"], failures=[None, "lost"], kinds=[None, "retryable"], latency_s=[0.5, None], attempts=[1, 2])
    table = score_unit(prepared, transcribed, spec)
    assert table.column("errors").to_pylist() == [1, None] and table.column("latency_s").to_pylist() == [0.5, None]
    assert table.column("attempts").to_pylist() == [1, 2] and table.column("failure").to_pylist() == [None, "retryable"]
    assert table.column("audio_duration_s").to_pylist() == [None, None] and table.column("status").to_pylist() == ["ok", "failed"]


def test_work_rows_keep_embedded_audio_and_segments(tmp_path):
    audio = tone(tmp_path / "long.wav", 8000, 300)
    utterances = [Utterance(id="b", text="x", audio=None, audio_bytes=audio.read_bytes(), speaker="s"),
                  Utterance(id="seg", text="y", audio=audio, speaker="s", offset_s=0.125, duration_s=0.25)]
    table = utterances_table(utterances)
    job = Job(manifest=table, rows=np.array([0, 1]), condition_indices=np.array([0, 0], dtype=np.int32), spec=spec_of(), candidates=None)
    embedded, segment = work_utterances(job.unit(0, 2))
    assert embedded.audio is None and embedded.audio_bytes == audio.read_bytes() and embedded.offset_s is None
    assert (segment.offset_s, segment.duration_s, segment.audio_bytes) == (0.125, 0.25, None)
    prepared = prepare_unit(job.unit(0, 2), spec_of(), AudioLoader(RATE), None)
    assert prepared.errors == [None, None] and prepared.durations_s == [0.5, 0.25]
    whole = soundfile.read(audio, dtype="float32")[0]
    assert np.array_equal(prepared.samples[0], whole) and np.array_equal(prepared.samples[1], whole[2000:6000])


def test_decoded_audio_is_shared_read_only_and_bounded_in_length(tmp_path):
    manifest = manifest_of(tmp_path, [1600, 4800])
    utterance = next(iter(manifest))
    samples = AudioLoader(RATE)(utterance)
    assert not samples.flags.writeable  # shared through the cache: a transform cannot edit it in place
    with pytest.raises(ValueError):
        samples[0] = 1.0
    short = AudioLoader(RATE, max_duration_s=0.2)
    spec = spec_of()
    unit, candidates = unit_of(manifest, spec, [0, 1], [0, 0])
    prepared = prepare_unit(unit, spec, short, candidates)
    assert prepared.errors[0] is None and "more than the limit of 0.2 s per utterance" in prepared.errors[1]


def test_babble_mixes_in_other_utterances_of_the_manifest(tmp_path):
    from harness.noise import apply_profile

    # u0 and u1 on disk, u2 embedded: every talker decodes, whichever way the manifest holds it.
    paths = [tone(tmp_path / f"b{i}.wav", 3200, 150 + 70 * i) for i in range(3)]
    utterances = [Utterance(id="u0", text="one", audio=paths[0], speaker="s0"), Utterance(id="u1", text="one", audio=paths[1], speaker="s1"),
                  Utterance(id="u2", text="one", audio=None, audio_bytes=paths[2].read_bytes(), speaker="s2")]
    manifest = Manifest.from_utterances(utterances, source="test", sha256="0" * 64, format="jsonl")
    babble = prepare(load_profile("babble"), RATE)
    spec = spec_of((Condition(name="babble", snr_db=5.0, profile=babble),), seed=4)
    unit, candidates = unit_of(manifest, spec, [0, 1, 2], [0, 0, 0])
    prepared = prepare_unit(unit, spec, AudioLoader(RATE), candidates)
    assert prepared.errors == [None, None, None]
    load = AudioLoader(RATE)
    for i, utterance in enumerate(utterances):
        clean = load(utterance)
        others = [load(u) for u in utterances if u.id != utterance.id]
        expected, records = apply_profile(babble, clean.copy(), RATE, snr_db=5.0, rng=rng_for(4, utterance.id, "babble@5dB"),
                                          babble_pool=lambda n, rng, others=others: [others[j] for j in rng.choice(len(others), size=min(n, len(others)), replace=False)])
        assert np.array_equal(prepared.samples[i], expected), utterance.id
        assert not np.array_equal(prepared.samples[i], clean)
    # Without candidates there is no one to babble with: the row fails alone, saying so.
    alone = prepare_unit(unit, spec, AudioLoader(RATE), None)
    assert alone.errors[0].startswith("condition babble@5dB: babble needs other utterances with audio in the manifest")


class Raises(Words):
    """Raises a TranscriptionError for a batch holding a bad utterance, as an HTTP backend does."""

    name = "raises"

    def __init__(self, bad=("u1",)):
        super().__init__()
        self.bad = set(bad)

    def transcribe(self, batch):
        self.batches.append([request.utterance_id for request in batch])
        if any(request.utterance_id in self.bad for request in batch):
            raise RetryableError("overloaded", attempts=5, latency_s=2.5)
        return [Transcript(text=self.NAMES[round(len(r.samples) / (r.sample_rate_hz / 10)) % 10], latency_s=0.5, attempts=1) for r in batch]


def test_a_raised_transcription_error_fails_only_its_utterance_with_its_kind(tmp_path):
    spec = spec_of(batch_size=3)
    prepared = prepared_of(tmp_path, [1600, 3200, 4800], spec)
    backend = Raises()
    out = transcribe_unit(prepared, backend, spec)
    assert backend.batches == [["u0", "u1", "u2"], ["u0"], ["u1"], ["u2"]]
    assert out.texts == ["one", None, "three"] and out.failures == [None, "backend 'raises': overloaded", None]
    assert out.kinds == [None, "retryable", None] and out.attempts == [1, 5, 1] and out.latency_s == [0.5, 2.5, 0.5]


def test_noisy_transcripts_are_cached_with_their_noise_seed_and_latency(tmp_path):
    from harness.cache import TranscriptCache

    white = prepare(load_profile("white"), RATE)
    spec = spec_of((Condition(name="white", snr_db=10.0, profile=white),), batch_size=4)
    manifest = manifest_of(tmp_path, [1600, 3200])
    unit, candidates = unit_of(manifest, spec, [0, 1], [0, 0])
    prepared = prepare_unit(unit, spec, AudioLoader(RATE), candidates)
    backend = Raises(bad=())
    cache = TranscriptCache(tmp_path / "cache.sqlite")
    first = transcribe_unit(prepared, backend, spec, cache.scope(backend))
    assert first.texts == ["one", "two"] and len(cache) == 2
    backend.batches.clear()
    again = transcribe_unit(prepared, backend, spec, cache.scope(backend))
    assert backend.batches == [] and again.texts == ["one", "two"] and again.latency_s == [0.5, 0.5] and again.attempts == [0, 0]
    # Another run seed draws other noise: nothing cached applies.
    other = prepare_unit(unit, spec_of(spec.conditions, seed=99, batch_size=4), AudioLoader(RATE), candidates)
    transcribe_unit(other, backend, spec, cache.scope(backend))
    assert backend.batches == [["u0", "u1"]]
    cache.close()
