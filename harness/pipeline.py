"""One unit of work, wherever it runs: prepare (decode, resample, noise), transcribe, score.

A unit is an Arrow table of work rows: manifest columns plus the index of the condition each row
is evaluated under. Its result is an Arrow table of result rows (harness.store's schema). Every
random draw is keyed by (run seed, utterance id, condition), so a unit gives the same rows on any
worker, in any order, in any batch.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from harness.errors import AudioError, ConfigError, HarnessError
from harness.manifest import Utterance
from harness.manifest_table import TAG_PREFIX
from harness.store import result_schema

if TYPE_CHECKING:
    from harness.backends import Backend
    from harness.runner import Condition

CONDITION_INDEX = "condition_index"
# Work rows carry these manifest columns (and the tags) to wherever the unit runs.
WORK_COLUMNS = ("id", "text", "audio", "audio_bytes", "speaker", "offset_s", "duration_s")
AUDIO_CACHE_SIZE = 256


@dataclass(frozen=True, kw_only=True)
class WorkSpec:
    """Everything a worker needs besides the backend; picklable, so it can travel to another machine."""

    conditions: tuple[Condition, ...]
    normalizer: str
    seed: int
    sample_rate_hz: int | None  # None: the backend takes no audio (replay)
    batch_size: int
    tag_names: tuple[str, ...]
    max_duration_s: float | None = None  # longer audio fails its utterance; None: no limit
    max_reference_words: int | None = None  # a longer reference fails its utterance; None: no limit

    @property
    def schema(self) -> pa.Schema:
        return result_schema(self.tag_names)


@dataclass
class PreparedUnit:
    """A unit with its audio ready (or the reason it is not), row by row."""

    work: pa.Table
    samples: list[np.ndarray | None]
    errors: list[str | None]
    durations_s: list[float | None]
    noise: list[str | None]  # JSON of what the noise chain drew and applied
    noise_seeds: list[int | None] | None = None  # the seed of each row's noise draw (None: clean)

    def seeds(self) -> list[int | None]:
        return self.noise_seeds if self.noise_seeds is not None else [None] * self.work.num_rows


@dataclass
class Transcribed:
    """What the backend made of a prepared unit, row by row.

    `texts` is the hypothesis (None for a failed row); `messages` the failure, or a note kept with a
    scored row (replay's missing hypothesis); `failures` the failure alone; `kinds` "retryable" or
    "permanent" for a failed row; `latency_s` and `attempts` as the backend measured them (attempts
    0: the transcript came from the cache).
    """

    texts: list[str | None]
    messages: list[str | None]
    failures: list[str | None]
    kinds: list[str | None]
    latency_s: list[float | None]
    attempts: list[int | None]


@dataclass(frozen=True)
class BabbleCandidates:
    """Manifest utterances with audio that babble draws its talkers from (columns id, audio, audio_bytes)."""

    table: pa.Table
    _positions: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, manifest_table: pa.Table) -> BabbleCandidates:
        import pyarrow.compute as pc

        has_audio = pc.or_(pc.is_valid(manifest_table.column("audio")), pc.is_valid(manifest_table.column("audio_bytes")))
        return cls(manifest_table.select(["id", "audio", "audio_bytes"]).filter(has_audio))

    def __len__(self) -> int:
        return self.table.num_rows

    def position(self, utterance_id: str) -> int | None:
        if not self._positions and len(self):
            self._positions.update((value, index) for index, value in enumerate(self.table.column("id").to_pylist()))
        return self._positions.get(utterance_id)

    def utterance(self, index: int) -> Utterance:
        row = self.table.slice(index, 1).to_pylist()[0]
        return Utterance(id=row["id"], text="", audio=None if row["audio"] is None else Path(row["audio"]), audio_bytes=row["audio_bytes"])


class AudioLoader:
    """Decode at one rate, keeping recent utterances so each is decoded once per sweep of conditions.

    Thread-safe; the cache is bounded, so a million-utterance run holds a few hundred clips at most.
    """

    def __init__(self, rate_hz: int, cache_size: int = AUDIO_CACHE_SIZE, *, max_duration_s: float | None = None):
        self.rate_hz = rate_hz
        self.max_duration_s = max_duration_s
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def __call__(self, utterance: Utterance) -> np.ndarray:
        with self._lock:
            cached = self._cache.get(utterance.id)
            if cached is not None:
                self._cache.move_to_end(utterance.id)
                return cached
        samples = _decode(utterance, self.rate_hz, self.max_duration_s)
        samples.flags.writeable = False  # shared through the cache: transforms must copy, never edit
        with self._lock:
            self._cache[utterance.id] = samples
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return samples


def _decode(utterance: Utterance, rate_hz: int, max_duration_s: float | None) -> np.ndarray:
    from harness.audio import load_audio

    if utterance.audio_bytes is not None:
        source: Path | io.BytesIO = io.BytesIO(utterance.audio_bytes)
    elif utterance.audio is None:
        raise AudioError(f"utterance {utterance.id!r} has no audio. Add an audio path to the manifest.")
    else:
        source = utterance.audio
    return load_audio(source, rate_hz, offset_s=utterance.offset_s, duration_s=utterance.duration_s, max_duration_s=max_duration_s)


def reference_too_long(text: str, max_words: int | None) -> str | None:
    """The failure reason when a reference has more than max_words words (counted without splitting a huge text)."""
    if not max_words or len(text) <= max_words:  # fewer characters than the limit: fewer words too
        return None
    n_words = sum(1 for _ in re.finditer(r"\S+", text))
    if n_words <= max_words:
        return None
    return (f"reference has {n_words} words, more than the limit of {max_words} per utterance: aligning it would take memory in proportion "
            "to its length times the hypothesis's. Split the utterance, or raise --max-reference-words.")


def babble_pool_for(utterance_id: str, candidates: Sequence[Utterance] | BabbleCandidates, load: Callable[[Utterance], np.ndarray]) -> Callable[[int, np.random.Generator], list[np.ndarray]]:
    """Babble talkers for one utterance: other utterances of the manifest, drawn with the caller's generator.

    The draw picks positions among the candidates other than this utterance, in manifest order, so
    it does not depend on how many workers there are or which one asks.
    """

    def others() -> tuple[int, Callable[[int], Utterance]]:
        if not isinstance(candidates, BabbleCandidates):
            listed = [u for u in candidates if u.id != utterance_id]
            return len(listed), listed.__getitem__
        own = candidates.position(utterance_id)
        return len(candidates) - (own is not None), lambda index: candidates.utterance(index if own is None or index < own else index + 1)

    def pool(n: int, rng: np.random.Generator) -> list[np.ndarray]:
        n_others, pick = others()
        if not n_others:
            raise ConfigError("babble needs other utterances with audio in the manifest; this one has none.")
        picks = rng.choice(n_others, size=min(n, n_others), replace=False)
        return [load(pick(int(i))) for i in picks]

    return pool


def work_utterances(work: pa.Table) -> list[Utterance]:
    """The work rows as Utterance objects (tags included), for preparation and tools."""
    columns = {name: work.column(name).to_pylist() for name in work.column_names if name in WORK_COLUMNS or name.startswith(TAG_PREFIX)}
    tags = [(name[len(TAG_PREFIX) :], values) for name, values in columns.items() if name.startswith(TAG_PREFIX)]
    return [
        Utterance(
            id=columns["id"][i], text=columns["text"][i], audio=None if columns["audio"][i] is None else Path(columns["audio"][i]),
            audio_bytes=columns["audio_bytes"][i], speaker=columns["speaker"][i], offset_s=columns["offset_s"][i], duration_s=columns["duration_s"][i],
            tags=MappingProxyType({name: values[i] for name, values in tags if values[i] is not None}),
        )
        for i in range(work.num_rows)
    ]


def prepare_unit(work: pa.Table, spec: WorkSpec, load: AudioLoader | None, candidates: BabbleCandidates | None) -> PreparedUnit:
    """Decode, resample and put each row under its condition; a row that cannot be prepared fails alone."""
    n = work.num_rows
    too_long = [None] * n
    if spec.max_reference_words:
        too_long = [reference_too_long(text, spec.max_reference_words) for text in work.column("text").to_pylist()]
    if load is None:
        return PreparedUnit(work=work, samples=[None] * n, errors=too_long, durations_s=[None] * n, noise=[None] * n)
    prepared = PreparedUnit(work=work, samples=[], errors=[], durations_s=[], noise=[], noise_seeds=[])
    condition_indices = work.column(CONDITION_INDEX).to_pylist()
    for utterance, condition_index, refused in zip(work_utterances(work), condition_indices, too_long, strict=True):
        if refused is not None:
            samples, error, duration_s, noise = None, refused, None, None
        else:
            samples, error, duration_s, noise = _prepare_one(utterance, spec.conditions[condition_index], spec.seed, load, candidates)
        prepared.samples.append(samples)
        prepared.errors.append(error)
        prepared.durations_s.append(duration_s)
        prepared.noise.append(noise)
        condition = spec.conditions[condition_index]
        prepared.noise_seeds.append(None if condition.profile is None else _noise_seed(spec.seed, utterance.id, condition.key))  # type: ignore[union-attr]
    return prepared


def _noise_seed(seed: int, utterance_id: str, condition_key: str) -> int:
    from harness.seeding import seed_for

    return seed_for(seed, utterance_id, condition_key)


def _prepare_one(utterance: Utterance, condition: Condition, seed: int, load: AudioLoader, candidates: BabbleCandidates | None) -> tuple[np.ndarray | None, str | None, float | None, str | None]:
    from harness.seeding import rng_for, seed_for

    try:
        samples = load(utterance)
    except HarnessError as error:
        return None, str(error), None, None
    except Exception as error:  # a decoder crash fails this utterance, not the run
        return None, f"{utterance.audio}: {type(error).__name__}: {error}", None, None
    duration_s = len(samples) / load.rate_hz
    if condition.profile is None:
        return samples, None, duration_s, None
    from harness.noise import apply_profile

    rng = rng_for(seed, utterance.id, condition.key)
    pool = babble_pool_for(utterance.id, candidates if candidates is not None else [], load)
    try:
        samples, records = apply_profile(condition.profile, samples.copy(), load.rate_hz, snr_db=condition.snr_db, rng=rng, babble_pool=pool)
    except HarnessError as error:
        return None, f"condition {condition.key}: {error}", duration_s, None
    except Exception as error:
        return None, f"condition {condition.key}: {type(error).__name__}: {error}", duration_s, None
    noise = [{"seed": seed_for(seed, utterance.id, condition.key)}, *records]
    return samples, None, duration_s, json.dumps(noise, sort_keys=True, ensure_ascii=False)


def transcribe_unit(prepared: PreparedUnit, backend: Backend, spec: WorkSpec, cache: Any = None) -> Transcribed:
    """Transcripts for the rows that were prepared, in backend batches (cached transcripts first).

    A batch that raises is retried one utterance at a time, so one bad utterance fails alone; a
    FatalBackendError stops the run. An engine that crashes on an utterance fails it as retryable
    (the harness cannot tell why); a TranscriptionError says itself whether a retry could succeed.
    """
    from harness.backends import FatalBackendError, Transcript, TranscriptionError, TranscriptionRequest

    ids = prepared.work.column("id").to_pylist()
    n = len(ids)
    keys = [spec.conditions[i].key for i in prepared.work.column(CONDITION_INDEX).to_pylist()]
    out = Transcribed(texts=[None] * n, messages=list(prepared.errors), failures=list(prepared.errors),
                      kinds=["permanent" if error is not None else None for error in prepared.errors], latency_s=[None] * n, attempts=[None] * n)
    rate_hz = spec.sample_rate_hz
    requests = {i: TranscriptionRequest(utterance_id=ids[i], samples=prepared.samples[i], sample_rate_hz=rate_hz, condition=keys[i]) for i in range(n) if out.failures[i] is None}
    seeds = prepared.seeds()

    def take(i: int, result: Any) -> None:
        if isinstance(result, TranscriptionError):
            out.failures[i] = out.messages[i] = f"backend {backend.name!r}: {result}"
            out.kinds[i], out.latency_s[i], out.attempts[i] = result.kind, result.latency_s, result.attempts
        elif isinstance(result, Transcript):
            out.texts[i], out.messages[i], out.latency_s[i], out.attempts[i] = result.text, result.note, result.latency_s, result.attempts
        elif isinstance(result, str):
            out.texts[i] = result
        else:
            raise HarnessError(f"backend {backend.name!r} returned {type(result).__name__} for utterance {ids[i]!r}; expected a string, a Transcript or a TranscriptionError")

    ready = list(requests)
    if cache is not None:
        for i in ready:
            hit = cache.get(requests[i], seeds[i])
            if hit is not None:
                take(i, hit)
        ready = [i for i in ready if out.texts[i] is None]
    for start in range(0, len(ready), spec.batch_size):
        rows = ready[start : start + spec.batch_size]
        batch = [requests[i] for i in rows]
        try:
            results = backend.transcribe(batch)
            if len(results) != len(batch):
                raise HarnessError(f"backend {backend.name!r} returned {len(results)} transcripts for {len(batch)} utterances")
            for i, result in zip(rows, results, strict=True):
                take(i, result)
        except (KeyboardInterrupt, FatalBackendError):
            raise
        except Exception:
            # One utterance may have broken the batch: retry alone so only it fails.
            for i, request in zip(rows, batch, strict=True):
                try:
                    take(i, backend.transcribe([request])[0])
                except (KeyboardInterrupt, FatalBackendError):
                    raise
                except TranscriptionError as error:
                    take(i, error)
                except Exception as error:
                    # The harness cannot tell why an engine crashed: a resume may try it again.
                    out.failures[i] = out.messages[i] = f"backend {backend.name!r} failed: {type(error).__name__}: {error}"
                    out.kinds[i] = "retryable"
        if cache is not None:
            cache.put_many([(requests[i], seeds[i], Transcript(text=out.texts[i], latency_s=out.latency_s[i], attempts=out.attempts[i], note=out.messages[i]))
                            for i in rows if out.failures[i] is None and out.texts[i] is not None])
    return out


def score_unit(prepared: PreparedUnit, transcribed: Transcribed, spec: WorkSpec) -> pa.Table:
    """The unit's result rows: counts for rows with a hypothesis, status "failed" for the others."""
    from harness.normalize import get_normalizer
    from harness.scoring import COUNT_FIELDS, score_columns

    work = prepared.work
    n = work.num_rows
    hypotheses, errors = transcribed.texts, transcribed.messages
    ok = [failure is None for failure in transcribed.failures]
    everything_ok = all(ok)
    ok_rows = list(range(n)) if everything_ok else [i for i in range(n) if ok[i]]
    text = work.column("text")
    references = text if everything_ok else text.take(pa.array(ok_rows, type=pa.int64()))
    scored = score_columns(references, list(hypotheses) if everything_ok else [hypotheses[i] for i in ok_rows], get_normalizer(spec.normalizer))
    condition_indices = work.column(CONDITION_INDEX).to_numpy()
    conditions = spec.conditions
    keys = np.array([c.key for c in conditions], dtype=object)[condition_indices]
    names = np.array([c.name for c in conditions], dtype=object)[condition_indices]
    snrs = np.array([np.nan if c.snr_db is None else c.snr_db for c in conditions], dtype=np.float64)[condition_indices]
    mask = np.array([not flag for flag in ok], dtype=bool)
    columns: dict[str, Any] = {
        "utterance_id": work.column("id"),
        "condition_key": pa.array(keys, type=pa.string()),
        "condition": pa.array(names, type=pa.string()),
        "snr_db": pa.array(snrs, mask=np.isnan(snrs)),
        "speaker": work.column("speaker"),
        "status": pa.array(np.where(mask, "failed", "ok").astype(object), type=pa.string()),
        "error": pa.array(list(errors), type=pa.string()),
        "reference": work.column("text"),
        "hypothesis": pa.array(list(hypotheses) if everything_ok else [hypotheses[i] if ok[i] else None for i in range(n)], type=pa.string()),
        "audio_duration_s": pa.array(prepared.durations_s, type=pa.float64()),
        "noise_json": pa.array(prepared.noise, type=pa.string()),
        "latency_s": pa.array(transcribed.latency_s, type=pa.float64()),
        "attempts": pa.array(transcribed.attempts, type=pa.int64()),
        "failure": pa.array(transcribed.kinds, type=pa.string()),
    }
    scatter = np.asarray(ok_rows, dtype=np.int64)
    for name, values in (("reference_normalized", scored.reference_normalized), ("hypothesis_normalized", scored.hypothesis_normalized)):
        if not everything_ok:
            full: list[str | None] = [None] * n
            for i, value in zip(ok_rows, values, strict=True):
                full[i] = value
            values = full
        columns[name] = pa.array(values, type=pa.string())
    for name in COUNT_FIELDS:
        if everything_ok:
            columns[name] = pa.array(scored.counts[name])
        else:
            full_counts = np.zeros(n, dtype=np.int64)
            full_counts[scatter] = scored.counts[name]
            columns[name] = pa.array(full_counts, mask=mask)
    for name in spec.tag_names:
        column = TAG_PREFIX + name
        columns[column] = work.column(column) if column in work.column_names else pa.nulls(n, pa.string())
    schema = spec.schema
    return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def run_unit(prepared: PreparedUnit, backend: Backend, spec: WorkSpec, cache: Any = None) -> pa.Table:
    """Transcribe and score a prepared unit."""
    return score_unit(prepared, transcribe_unit(prepared, backend, spec, cache), spec)
