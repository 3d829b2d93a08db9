"""Conditions x utterances -> scored transcripts, written batch by batch and resumable.

Audio is decoded, resampled and put under each noise condition in worker threads that fill a
bounded queue of ready batches, so the backend never waits on preparation it could overlap.
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import json
import platform
import re
import sqlite3
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness.audio import DEFAULT_MAX_DURATION_S, load_audio
from harness.backends import Backend, FatalBackendError, Transcript, TranscriptionError, TranscriptionRequest, describe_backend
from harness.errors import AudioError, ConfigError, HarnessError, OutputError
from harness.manifest import Manifest, Utterance
from harness.normalize import get_normalizer, normalizer_version
from harness.rundir import CLEAN, EXPORT_FILE, RESULTS_FILE, RUN_FILE, read_run_record, write_run_record
from harness.scoring import score_many
from harness.seeding import rng_for, seed_for
from harness.store import ResultStore

__all__ = ["CLEAN", "EXPORT_FILE", "RUN_FILE", "Condition", "RunSummary", "audio_loader", "build_conditions", "read_run_record", "run_evaluation"]
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_REFERENCE_WORDS = 20_000
"""Longest reference scored by default. Alignment costs grow with the product of the two lengths: a 50 MB
reference took 3.3 GB. A longer one fails its utterance with the reason; raise it with --max-reference-words."""
# errno values that mean "the disk (or the quota, or the file size limit) is full".
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True, kw_only=True)
class Condition:
    """A recording condition every utterance is evaluated under: clean, or a noise profile at an SNR."""

    name: str = CLEAN
    snr_db: float | None = None
    profile: Any = None  # harness.noise.NoiseProfile; None for the clean baseline

    @property
    def key(self) -> str:
        if self.profile is None:
            return CLEAN
        from harness.noise import condition_key

        return condition_key(self.name, self.snr_db)

    def describe(self) -> dict[str, Any]:
        record: dict[str, Any] = {"key": self.key, "name": self.name, "snr_db": self.snr_db}
        if self.profile is not None:
            record["profile_source"] = str(getattr(self.profile, "source_path", "") or "")
        return record


def build_conditions(profiles: Sequence[Any], snrs_db: Sequence[float]) -> list[Condition]:
    """The clean baseline, then every profile at every SNR (profiles with no additive noise once)."""
    if snrs_db and not any(getattr(p, "uses_snr", False) for p in profiles):
        named = ", ".join(repr(p.name) for p in profiles)
        raise ConfigError(
            f"--snr {','.join(f'{s:g}' for s in snrs_db)} is given, but "
            + (f"no profile adds noise at an SNR ({named} do not)" if profiles else "no --profile is")
            + ", so it would be ignored. Add a noise profile, e.g. --profile pink --snr 20,10,0 (see `asrfair noise list`), or drop --snr."
        )
    conditions = [Condition()]
    for profile in profiles:
        if getattr(profile, "uses_snr", False):
            if not snrs_db:
                raise ConfigError(f"profile {profile.name!r} adds noise at an SNR; give the levels with --snr, e.g. --snr 20,10,5,0.")
            conditions.extend(Condition(name=profile.name, snr_db=float(snr), profile=profile) for snr in snrs_db)
        else:
            conditions.append(Condition(name=profile.name, snr_db=None, profile=profile))
    keys = [c.key for c in conditions]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"conditions repeat: {keys}. Give each --profile once.")
    return conditions


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    out_dir: Path
    n_total: int
    n_done_before: int
    n_written: int
    n_failed: int
    seconds: float
    stopped_early: bool = False
    n_retried: int = 0  # rows that had failed for a retryable reason and were sent again
    n_cached: int = 0  # transcripts taken from the transcript cache instead of the backend
    batch_size: int = DEFAULT_BATCH_SIZE
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _WorkItem:
    utterance: Utterance
    condition: Condition


@dataclass
class _Prepared:
    item: _WorkItem
    request: TranscriptionRequest | None = None
    error: str | None = None
    failure: str | None = None  # "retryable" or "permanent" once failed
    audio_duration_s: float | None = None
    noise: list[dict[str, Any]] = field(default_factory=list)
    noise_seed: int | None = None
    result: Transcript | None = None


def run_evaluation(
    manifest: Manifest,
    backend: Backend,
    *,
    out_dir: str | Path,
    normalizer: str = "basic",
    seed: int = 0,
    batch_size: int | None = None,
    conditions: Sequence[Condition] = (Condition(),),
    resume: bool = False,
    retry_failed: bool = True,
    cache: Any = None,
    prep_workers: int = 2,
    prefetch_batches: int = 4,
    backend_options: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    max_reference_words: int | None = DEFAULT_MAX_REFERENCE_WORDS,
    on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
) -> RunSummary:
    """Transcribe and score every (utterance, condition) not yet in `out_dir`, one batch per transaction.

    On resume, rows that failed for a retryable reason (rate limits, timeouts) are sent again and
    replaced, unless `retry_failed` is False; a finished utterance is never sent again. `batch_size`
    None means 16, or the backend's concurrency when that is larger. `cache` (a
    harness.cache.TranscriptCache) supplies transcripts already made of the same audio, condition and
    backend. `stop_requested` is polled after each batch; when it returns True the run stops cleanly
    with every finished batch saved (the CLI sets it on the first Ctrl-C or SIGTERM, since a native
    decoder may swallow them). An utterance whose audio is longer than `max_duration_s` or whose
    reference has more than `max_reference_words` words fails alone with the reason (None: no limit).
    `on_batch` receives each batch's rows once they are committed (progress lines with a running WER).
    The backend is closed when the run ends, however it ends.
    """
    try:
        return _run(manifest, backend, out_dir=Path(out_dir), normalizer=normalizer, seed=seed, batch_size=batch_size, conditions=conditions, resume=resume,
                    retry_failed=retry_failed, cache=cache, prep_workers=prep_workers, prefetch_batches=prefetch_batches, backend_options=backend_options,
                    progress=progress, stop_requested=stop_requested, max_duration_s=max_duration_s, max_reference_words=max_reference_words, on_batch=on_batch)
    finally:
        backend.close()


def _run(manifest: Manifest, backend: Backend, *, out_dir: Path, normalizer: str, seed: int, batch_size: int | None, conditions: Sequence[Condition], resume: bool,
         retry_failed: bool, cache: Any, prep_workers: int, prefetch_batches: int, backend_options: dict[str, str] | None,
         progress: Callable[[int, int], None] | None, stop_requested: Callable[[], bool] | None, max_duration_s: float | None,
         max_reference_words: int | None, on_batch: Callable[[list[dict[str, Any]]], None] | None) -> RunSummary:
    if batch_size is None:
        batch_size = max(DEFAULT_BATCH_SIZE, int(backend.concurrency))
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}.")
    for option, limit in (("--max-duration-s", max_duration_s), ("--max-reference-words", max_reference_words)):
        if limit is not None and not limit > 0:
            raise ConfigError(f"{option} {limit:g}: a limit must be positive. Give a larger value, or 0 for no limit.")
    notes: list[str] = []
    if batch_size < backend.concurrency:
        notes.append(f"--batch-size {batch_size} is below the {backend.concurrency} utterances backend {backend.name!r} can work on at once; a larger batch keeps it busy.")
    normalize = get_normalizer(normalizer)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, resume=resume)
    conditions = list(conditions)
    needs_audio = backend.sample_rate_hz is not None
    if not needs_audio and any(c.profile is not None for c in conditions):
        raise ConfigError(f"backend {backend.name!r} replays transcripts and takes no audio, so noise profiles cannot apply. Drop --profile, or use an audio backend.")
    backend.prepare([u.id for u in manifest])
    if needs_audio and any(c.profile is not None for c in conditions):
        from harness.noise import prepare as prepare_profile

        # Decode every noise recording and impulse response once, now: a corrupt file stops the
        # run before any audio is transcribed, and no utterance pays for decoding it again.
        prepared_profiles = {c.name: prepare_profile(c.profile, backend.sample_rate_hz) for c in conditions if c.profile is not None}
        conditions = [c if c.profile is None else Condition(name=c.name, snr_db=c.snr_db, profile=prepared_profiles[c.name]) for c in conditions]

    config = {
        "manifest": {"path": str(Path(manifest.source).resolve()) if Path(manifest.source).exists() else manifest.source, "sha256": manifest.sha256, "format": manifest.format, "n_utterances": len(manifest)},
        "backend": {"name": backend.name, "options": dict(backend_options or {})},
        "normalizer": {"name": normalizer, "implementation": normalizer_version(normalizer)},
        "seed": seed,
        "conditions": [c.describe() for c in conditions],
    }
    lock = _lock_run_dir(out_dir)
    done: set[tuple[str, str]] = set()
    written = 0
    try:
        run_record = _open_run(out_dir, config, resume=resume)
        started = time.perf_counter()
        # The store is opened (and a damaged one refused) before run.json records a new session.
        with ResultStore(out_dir / RESULTS_FILE) as store:
            done = store.done_keys(retry_failed=retry_failed)
            retrying = store.retryable_keys() if retry_failed else set()
            run_record["backend_details"] = describe_backend(backend)
            session: dict[str, Any] = {"started_at": _now(), "batch_size": batch_size, "retry_failed": retry_failed}
            run_record.setdefault("sessions", []).append(session)
            write_run_record(out_dir, run_record)
            work = [_WorkItem(u, c) for u in manifest for c in conditions if (u.id, c.key) not in done]
            n_total = len(manifest) * len(conditions)
            load = _audio_loader(backend.sample_rate_hz, max_duration_s=max_duration_s) if needs_audio else None
            babble_candidates = [u for u in manifest if u.has_audio]
            cache_scope = cache.scope(backend) if cache is not None else None
            failed = cached = 0
            interrupted = True
            progress_base = len(done)

            def within_batch(n_finished: int) -> None:
                if progress is not None:
                    progress(progress_base + written + n_finished, n_total)

            backend.set_progress(within_batch)
            try:
                for prepared in _prepared_batches(work, batch_size, load, babble_candidates, seed, prep_workers, prefetch_batches, max_reference_words):
                    rows, n_cached = _transcribe_and_score(backend, prepared, normalize, cache_scope)
                    store.write_batch(rows)
                    written += len(rows)
                    cached += n_cached
                    failed += sum(row["status"] == "failed" for row in rows)
                    if on_batch is not None:
                        on_batch(rows)
                    if progress is not None:
                        progress(progress_base + written, n_total)
                    if stop_requested is not None and stop_requested():
                        break
                else:
                    interrupted = False
            finally:
                backend.set_progress(None)
                session["ended_at"] = _now()
                session["written"] = written
                session["retried"] = len(retrying & {(i.utterance.id, i.condition.key) for i in work[:written]})
                session["interrupted"] = interrupted
                if cache is not None:
                    session["cache"] = {"path": str(cache.path), "hits": cached}
                stats = backend.stats()
                if stats:
                    session["backend_stats"] = stats
                    run_record["backend_stats"] = _sum_stats(s.get("backend_stats") or {} for s in run_record["sessions"])
                try:
                    complete = not interrupted and store.count() == n_total
                    run_record["status"] = "complete" if complete else "interrupted"
                    run_record["backend_details"] = describe_backend(backend)
                    run_record["failures"] = store.failure_counts()
                    write_run_record(out_dir, run_record)
                    if complete:
                        store.to_frame().to_parquet(out_dir / EXPORT_FILE, index=False)
                except (OSError, sqlite3.Error):
                    # Saving the status can fail for the reason the run failed (a full disk); that reason is
                    # the one to report, and resume works from results.sqlite whatever run.json says.
                    if not interrupted:
                        raise
        return RunSummary(out_dir=out_dir, n_total=n_total, n_done_before=len(done), n_written=written, n_failed=failed, seconds=time.perf_counter() - started,
                          stopped_early=interrupted, n_retried=session["retried"], n_cached=cached, batch_size=batch_size, notes=tuple(notes + backend.notes()))
    except (OSError, sqlite3.Error) as error:
        raise _output_error(error, out_dir, n_finished=len(done) + written) from error
    finally:
        lock.close()


def _check_out_dir(out_dir: Path, *, resume: bool) -> None:
    """Refuse an --out that cannot hold this run before anything is written into it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a folder. Give a folder for the run (it is created if missing), e.g. --out reports/my-run.")
    run_file, results = out_dir / RUN_FILE, out_dir / RESULTS_FILE
    if resume and not run_file.exists():
        raise ConfigError(
            f"--resume: {out_dir} holds no run ({RUN_FILE} not found"
            + (f"; {results.name} is there without it" if results.exists() else "") + "). "
            "Point --out at the folder of the run to continue, or drop --resume to start a new run."
        )
    if not resume and results.exists() and not run_file.exists():
        raise ConfigError(f"{out_dir} holds {results.name} but no {RUN_FILE}: results of an unknown run. Choose a new --out folder, or move the folder away.")


def _output_error(error: OSError | sqlite3.Error, out_dir: Path, *, n_finished: int) -> HarnessError:
    """What went wrong writing the run folder, and what to do; finished batches are committed and stay."""
    path = getattr(error, "filename", None) or (out_dir / RESULTS_FILE if isinstance(error, sqlite3.Error) else out_dir)
    code = getattr(error, "errno", None)
    name = getattr(error, "sqlite_errorname", "") or ""
    resume = f"continue with the same command plus --resume --out {out_dir}"
    if code in _NO_SPACE or name == "SQLITE_FULL":
        return OutputError(
            f"no space left on the device writing {path}. The {n_finished} utterance-conditions finished so far are kept in "
            f"{out_dir / RESULTS_FILE}; free some space (or move the folder to a larger disk), then {resume}."
        )
    if isinstance(error, PermissionError) or code in (errno.EACCES, errno.EPERM) or name in ("SQLITE_READONLY", "SQLITE_CANTOPEN"):
        return OutputError(f"cannot write to {path} (permission denied). Choose an --out folder you can write to, or fix its permissions.")
    if code == errno.EROFS:
        return OutputError(f"cannot write to {path}: the file system is read-only. Choose an --out folder on a writable disk.")
    if name.startswith("SQLITE_IOERR"):
        return OutputError(
            f"the disk failed writing {out_dir / RESULTS_FILE} ({error}; usually a full disk or a failing drive). The {n_finished} "
            f"utterance-conditions finished before are kept; check the disk, then {resume}."
        )
    detail = getattr(error, "strerror", None) or str(error)
    then = f"then {resume}" if n_finished else "or choose another --out folder"
    return OutputError(f"cannot write the run to {path} ({detail}). Check the --out folder, {then}.")


def _lock_run_dir(out_dir: Path):
    """Hold an exclusive lock on the run directory: two processes resuming one run would race for rows."""
    import fcntl

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(out_dir / ".lock", "w")  # noqa: SIM115 - held open for the whole run, closed in run_evaluation
    except OSError as error:
        raise _output_error(error, out_dir, n_finished=0) from error
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"{out_dir} is in use by another asrfair process. Wait for it to finish (or stop it), then run again with --resume.") from None
    return handle


def _sum_stats(records: Any) -> dict[str, Any]:
    """Add per-session counters key by key (nested dicts too), so run.json holds totals over every session."""
    total: dict[str, Any] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, dict):
                total[key] = _sum_stats([total.get(key) or {}, value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


def _open_run(out_dir: Path, config: dict[str, Any], *, resume: bool) -> dict[str, Any]:
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        if not resume:
            raise ConfigError(f"{out_dir} already holds a run. Add --resume to continue it, or choose a new --out directory.")
        previous = read_run_record(run_file)
        for key, value in config.items():
            if previous.get(key) != value:
                raise ConfigError(
                    f"{run_file}: field {key!r} differs from this invocation (run has {json.dumps(previous.get(key))[:200]}, now {json.dumps(value)[:200]}). "
                    "Resume only with the same manifest, backend, normaliser, seed and conditions, or start a new --out directory."
                )
        return previous
    return {"asrfair_version": _version("asrfair"), "created_at": _now(), **config, "environment": _environment(), "status": "running"}


def _audio_loader(rate_hz: int, *, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Callable[[Utterance], np.ndarray]:
    """Decode at the backend's rate, caching recent utterances so each is decoded once per condition sweep."""
    known: dict[str, Utterance] = {}

    @lru_cache(maxsize=256)
    def load_by_id(utterance_id: str) -> np.ndarray:
        utterance = known[utterance_id]
        if utterance.audio_bytes is not None:
            source: Path | io.BytesIO = io.BytesIO(utterance.audio_bytes)
        elif utterance.audio is None:
            raise AudioError(f"utterance {utterance.id!r} has no audio. Add an audio path to the manifest.")
        else:
            source = utterance.audio
        samples = load_audio(source, rate_hz, offset_s=utterance.offset_s, duration_s=utterance.duration_s, max_duration_s=max_duration_s)
        samples.flags.writeable = False  # shared through the cache: transforms must copy, never edit
        return samples

    def load(utterance: Utterance) -> np.ndarray:
        known[utterance.id] = utterance
        return load_by_id(utterance.id)

    load.rate_hz = rate_hz  # type: ignore[attr-defined]
    return load


def _prepared_batches(work: list[_WorkItem], batch_size: int, load: Callable[[Utterance], np.ndarray] | None, babble_candidates: list[Utterance], seed: int, prep_workers: int, prefetch_batches: int,
                      max_reference_words: int | None = None) -> Iterator[list[_Prepared]]:
    """Yield prepared batches in order while up to `prefetch_batches` more are prepared in threads."""
    chunks = (work[i : i + batch_size] for i in range(0, len(work), batch_size))
    prepare = lambda chunk: [_prepare_item(item, load, babble_candidates, seed, max_reference_words) for item in chunk]  # noqa: E731
    with ThreadPoolExecutor(max_workers=max(1, prep_workers), thread_name_prefix="asrfair-prep") as pool:
        pending: deque[Future[list[_Prepared]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(prepare, chunk))
            if len(pending) >= prefetch_batches:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _prepare_item(item: _WorkItem, load: Callable[[Utterance], np.ndarray] | None, babble_candidates: list[Utterance], seed: int,
                  max_reference_words: int | None = None) -> _Prepared:
    utterance, condition = item.utterance, item.condition
    too_long = reference_too_long(utterance.text, max_reference_words)
    if too_long is not None:
        return _Prepared(item, error=too_long)
    if load is None:
        return _Prepared(item, TranscriptionRequest(utterance_id=utterance.id, samples=None, sample_rate_hz=None, condition=condition.key))
    rate_hz = load.rate_hz  # type: ignore[attr-defined]
    try:
        samples = load(utterance)
    except HarnessError as error:
        return _Prepared(item, error=str(error), failure="permanent")
    except Exception as error:  # a decoder crash fails this utterance, not the run
        return _Prepared(item, error=f"{utterance.audio}: {type(error).__name__}: {error}", failure="permanent")
    duration_s = len(samples) / rate_hz
    noise: list[dict[str, Any]] = []
    if condition.profile is not None:
        from harness.noise import apply_profile

        rng = rng_for(seed, utterance.id, condition.key)
        try:
            samples, noise = apply_profile(condition.profile, samples.copy(), rate_hz, snr_db=condition.snr_db, rng=rng, babble_pool=babble_pool_for(utterance.id, babble_candidates, load))
        except HarnessError as error:
            return _Prepared(item, error=f"condition {condition.key}: {error}", failure="permanent")
        except Exception as error:
            return _Prepared(item, error=f"condition {condition.key}: {type(error).__name__}: {error}", failure="permanent")
        noise_seed = seed_for(seed, utterance.id, condition.key)
        noise = [{"seed": noise_seed}, *noise]
    else:
        noise_seed = None
    request = TranscriptionRequest(utterance_id=utterance.id, samples=samples, sample_rate_hz=rate_hz, condition=condition.key)
    return _Prepared(item, request, audio_duration_s=duration_s, noise=noise, noise_seed=noise_seed)


def reference_too_long(text: str, max_words: int | None) -> str | None:
    """The failure reason when a reference has more than max_words words (counted without splitting a huge text)."""
    if not max_words or len(text) <= max_words:  # fewer characters than the limit: fewer words too
        return None
    n_words = sum(1 for _ in re.finditer(r"\S+", text))
    if n_words <= max_words:
        return None
    return (f"reference has {n_words} words, more than the limit of {max_words} per utterance: aligning it would take memory in proportion "
            "to its length times the hypothesis's. Split the utterance, or raise --max-reference-words.")


def babble_pool_for(utterance_id: str, candidates: Sequence[Utterance], load: Callable[[Utterance], np.ndarray]) -> Callable[[int, np.random.Generator], list[np.ndarray]]:
    """Babble talkers for one utterance: other utterances of the manifest, drawn with the caller's generator."""
    others = [u for u in candidates if u.id != utterance_id]

    def pool(n: int, rng: np.random.Generator) -> list[np.ndarray]:
        if not others:
            raise ConfigError("babble needs other utterances with audio in the manifest; this one has none.")
        picks = rng.choice(len(others), size=min(n, len(others)), replace=False)
        return [load(others[int(i)]) for i in picks]

    return pool


def audio_loader(rate_hz: int, *, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Callable[[Utterance], np.ndarray]:
    """The runner's cached decoder at `rate_hz`, for tools that must see exactly what a run fed the backend."""
    return _audio_loader(rate_hz, max_duration_s=max_duration_s)


def _transcribe_and_score(backend: Backend, prepared: list[_Prepared], normalize: Callable[[str], str], cache: Any = None) -> tuple[list[dict[str, Any]], int]:
    """Transcribe the batch (cached transcripts first), score it, and build its rows. Returns (rows, cache hits)."""
    ready = [p for p in prepared if p.error is None]
    n_cached = 0
    if cache is not None:
        for p in ready:
            p.result = cache.get(p.request, p.noise_seed)
        n_cached = sum(p.result is not None for p in ready)
        ready = [p for p in ready if p.result is None]
    if ready:
        try:
            results = backend.transcribe([p.request for p in ready])  # type: ignore[misc]
            if len(results) != len(ready):
                raise HarnessError(f"backend {backend.name!r} returned {len(results)} transcripts for {len(ready)} utterances")
            for p, result in zip(ready, results):
                _take(p, result, backend)
        except (KeyboardInterrupt, FatalBackendError):
            raise
        except Exception:
            # One utterance may have broken the batch: retry alone so only it fails.
            for p in ready:
                try:
                    _take(p, backend.transcribe([p.request])[0], backend)  # type: ignore[list-item]
                except (KeyboardInterrupt, FatalBackendError):
                    raise
                except TranscriptionError as error:
                    _take(p, error, backend)
                except Exception as error:
                    # The harness cannot tell why an engine crashed: a resume may try it again.
                    p.error, p.failure = f"backend {backend.name!r} failed: {type(error).__name__}: {error}", "retryable"
        if cache is not None:
            cache.put_many([(p.request, p.noise_seed, p.result) for p in ready if p.error is None and p.result is not None])
    scored = [p for p in prepared if p.error is None]
    scores = score_many([p.item.utterance.text for p in scored], [p.result.text or "" for p in scored], normalize)  # type: ignore[union-attr]
    score_of = {id(p): s for p, s in zip(scored, scores)}
    rows = []
    for p in prepared:
        utterance, condition = p.item.utterance, p.item.condition
        row: dict[str, Any] = {
            "utterance_id": utterance.id, "condition_key": condition.key, "condition": condition.name, "snr_db": condition.snr_db,
            "speaker": utterance.speaker, "reference": utterance.text, "tags_json": dict(utterance.tags),
            "noise_json": p.noise or None, "audio_duration_s": p.audio_duration_s,
        }
        if p.result is not None:
            row.update(latency_s=p.result.latency_s, attempts=p.result.attempts)
        if p.error is not None:
            row.update(status="failed", error=p.error, failure=p.failure or "permanent")
        else:
            s = score_of[id(p)]
            row.update(status="ok", hypothesis=p.result.text, **s.as_dict())  # type: ignore[union-attr]
            if p.result.note:  # type: ignore[union-attr]
                row["error"] = p.result.note  # type: ignore[union-attr]
        rows.append(row)
    return rows, n_cached


def _take(p: _Prepared, result: Any, backend: Backend) -> None:
    """Record one backend result on its prepared item: a transcript, or why it failed."""
    if isinstance(result, TranscriptionError):
        p.error, p.failure = f"backend {backend.name!r}: {result}", result.kind
        p.result = Transcript(text="", latency_s=result.latency_s, attempts=result.attempts)
    elif isinstance(result, Transcript):
        p.result = result
    elif isinstance(result, str):
        p.result = Transcript(text=result)
    else:
        raise HarnessError(f"backend {backend.name!r} returned {type(result).__name__} for utterance {p.item.utterance.id!r}; expected a string, a Transcript or a TranscriptionError")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _environment() -> dict[str, Any]:
    packages = ["asrfair", "numpy", "scipy", "pandas", "jiwer", "soundfile", "soxr", "av", "pocketsphinx", "whisper-normalizer", "torch", "transformers", "datasets"]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in packages if _version(name)},
        "git": _git_state(),
    }


def _git_state() -> dict[str, Any] | None:
    source_dir = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source_dir, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}
