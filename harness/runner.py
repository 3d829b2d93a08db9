"""Conditions x utterances -> scored transcripts, resumable: plan, execute, persist.

`run_evaluation` plans the work not yet stored, hands it to an executor (threads here, or a Ray
cluster) that prepares, transcribes and scores it unit by unit, and persists the result tables
in grouped commits. A run killed at any point resumes without redoing or duplicating a row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.audio import DEFAULT_MAX_DURATION_S
from harness.errors import ConfigError, HarnessError, OutputError
from harness.manifest import Manifest
from harness.pipeline import reference_too_long  # noqa: F401 - part of the runner's interface
from harness.rundir import CLEAN, EXPORT_FILE, RESULTS_FILE, RUN_FILE, lock_run_dir, read_run_record, write_run_record
from harness.store import ResultStore, result_schema, retryable_mask, row_keys

if TYPE_CHECKING:
    from harness.backends import Backend, BackendFactory
    from harness.executors import Executor

__all__ = ["CLEAN", "EXPORT_FILE", "RUN_FILE", "Condition", "RunSummary", "audio_loader", "build_conditions", "plan_work", "read_run_record", "run_evaluation"]
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
    backend_details: dict[str, Any] = field(default_factory=dict)


def run_evaluation(
    manifest: Manifest,
    backend: Backend | BackendFactory,
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
    on_batch: Callable[[Any], None] | None = None,
    executor: str | Executor = "threads",
    ray_address: str | None = None,
) -> RunSummary:
    """Transcribe and score every (utterance, condition) not yet in `out_dir`.

    `backend` is a ready backend, or a factory (name and options) that each worker builds its own
    backend from; the Ray executor needs a factory. The backend is closed when the run ends, however
    it ends. `prep_workers` is the number of preparation threads (threads) or of transcription actors
    (ray). `batch_size` None means 16, or the backend's concurrency when that is larger. On resume,
    rows that failed for a retryable reason (rate limits, timeouts) are sent again and replaced,
    unless `retry_failed` is False; a finished utterance is never sent again. `cache` (a
    harness.cache.TranscriptCache; threads only) supplies transcripts already made of the same
    audio, condition and backend. `stop_requested` is polled after each unit;
    when it returns True the run stops cleanly with every finished unit saved (the CLI sets it on
    the first Ctrl-C or SIGTERM, since a native decoder may swallow them). An utterance whose audio
    is longer than `max_duration_s` or whose reference has more than `max_reference_words` words
    fails alone with the reason (None: no limit). `on_batch` receives each unit's result table once
    it is handed to the store (progress lines with a running WER).
    """
    from harness.backends import BackendFactory
    from harness.executors import Job, get_executor
    from harness.normalize import get_normalizer, normalizer_version
    from harness.pipeline import BabbleCandidates, WorkSpec

    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}.")
    for option, limit in (("--max-duration-s", max_duration_s), ("--max-reference-words", max_reference_words)):
        if limit is not None and not limit > 0:
            raise ConfigError(f"{option} {limit:g}: a limit must be positive. Give a larger value, or 0 for no limit.")
    get_normalizer(normalizer)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, resume=resume)
    conditions = list(conditions)
    if isinstance(executor, str):
        executor = get_executor(executor, workers=prep_workers, prefetch_units=prefetch_batches, ray_address=ray_address)
    if executor.name == "ray" and not isinstance(backend, BackendFactory):
        raise ConfigError("the ray executor builds a backend on each worker: pass a BackendFactory(name=..., options=...), not a backend instance.")
    if executor.name == "ray" and cache is not None:
        raise ConfigError("--cache works with the threads executor only (the cache is a file on this machine). Drop --cache, or --executor ray.")
    # The backend is built (or probed) before the run directory is touched, so a bad option or a
    # replay file matching nothing stops the run before anything is written.
    try:
        info = executor.open(backend, manifest.table.column("id").to_pylist())
        lock = _lock_run_dir(out_dir)
    except BaseException:
        executor.close()
        raise
    n_done = written = 0
    try:
        if batch_size is None:
            batch_size = max(DEFAULT_BATCH_SIZE, int(info.concurrency))
        notes: list[str] = []
        if batch_size < info.concurrency:
            notes.append(f"--batch-size {batch_size} is below the {info.concurrency} utterances backend {info.name!r} can work on at once; a larger batch keeps it busy.")
        needs_audio = info.sample_rate_hz is not None
        if not needs_audio and any(c.profile is not None for c in conditions):
            raise ConfigError(f"backend {info.name!r} replays transcripts and takes no audio, so noise profiles cannot apply. Drop --profile, or use an audio backend.")
        if needs_audio and any(c.profile is not None for c in conditions):
            from harness.noise import prepare as prepare_profile

            # Decode every noise recording and impulse response once, now: a corrupt file stops the
            # run before any audio is transcribed, and no utterance pays for decoding it again.
            prepared_profiles = {c.name: prepare_profile(c.profile, info.sample_rate_hz) for c in conditions if c.profile is not None}
            conditions = [c if c.profile is None else Condition(name=c.name, snr_db=c.snr_db, profile=prepared_profiles[c.name]) for c in conditions]
        options = dict(backend.options) if isinstance(backend, BackendFactory) else dict(backend_options or {})
        config = {
            "manifest": {"path": str(Path(manifest.source).resolve()) if Path(manifest.source).exists() else manifest.source, "sha256": manifest.sha256, "format": manifest.format, "n_utterances": len(manifest)},
            "backend": {"name": info.name, "options": options},
            "normalizer": {"name": normalizer, "implementation": normalizer_version(normalizer)},
            "seed": seed,
            "conditions": [c.describe() for c in conditions],
        }
        run_record = _open_run(out_dir, config, resume=resume)
        started = time.perf_counter()
        spec = WorkSpec(
            conditions=tuple(conditions), normalizer=normalizer, seed=seed, sample_rate_hz=info.sample_rate_hz, batch_size=batch_size,
            tag_names=tuple(manifest.tag_names), max_duration_s=max_duration_s, max_reference_words=max_reference_words,
        )
        # The store is opened (and a damaged one refused) before run.json records a new session.
        with ResultStore(out_dir / RESULTS_FILE, schema=result_schema(manifest.tag_names)) as store:
            run_record["backend_details"] = info.details
            session: dict[str, Any] = {"started_at": _now(), "batch_size": batch_size, "retry_failed": retry_failed, "executor": executor.name}
            run_record.setdefault("sessions", []).append(session)
            write_run_record(out_dir, run_record)
            rows, condition_indices, retrying = plan_work(manifest, conditions, store, retry_failed=retry_failed)
            n_total = len(manifest) * len(conditions)
            n_done = n_total - len(rows)
            noisy = needs_audio and any(c.profile is not None for c in conditions)
            job = Job(manifest=manifest.table, rows=rows, condition_indices=condition_indices, spec=spec, candidates=BabbleCandidates.of(manifest.table) if noisy else None)
            written = failed = cached = retried = 0
            interrupted = True

            def within_unit(n_finished: int) -> None:
                if progress is not None:
                    progress(n_done + written + n_finished, n_total)

            try:
                with contextlib.closing(executor.run(job, cache=cache, within_unit=within_unit)) as results:
                    for table in results:
                        store.append(table)
                        written += table.num_rows
                        failed += _count_failed(table)
                        cached += _count_cached(table)
                        retried += _count_in(table, retrying)
                        if on_batch is not None:
                            on_batch(table)
                        if progress is not None:
                            progress(n_done + written, n_total)
                        if stop_requested is not None and stop_requested():
                            break
                    else:
                        interrupted = False
            finally:
                session["ended_at"] = _now()
                session["written"] = written
                session["retried"] = retried
                session["interrupted"] = interrupted
                if cache is not None:
                    session["cache"] = {"path": str(cache.path), "hits": cached}
                stats = executor.stats()
                if stats:
                    session["backend_stats"] = stats
                    run_record["backend_stats"] = _sum_stats(s.get("backend_stats") or {} for s in run_record["sessions"])
                try:
                    store.flush()
                    complete = not interrupted and store.count() == n_total
                    run_record["status"] = "complete" if complete else "interrupted"
                    run_record["backend_details"] = executor.details() or info.details
                    run_record["failures"] = store.failure_counts()
                    write_run_record(out_dir, run_record)
                    if complete:
                        store.export(out_dir / EXPORT_FILE)
                except (OSError, sqlite3.Error):
                    # Saving the status can fail for the reason the run failed (a full disk); that reason is
                    # the one to report, and resume works from the store whatever run.json says.
                    if not interrupted:
                        raise
        return RunSummary(
            out_dir=out_dir, n_total=n_total, n_done_before=n_done, n_written=written, n_failed=failed,
            seconds=time.perf_counter() - started, stopped_early=interrupted, n_retried=retried, n_cached=cached, batch_size=batch_size,
            notes=tuple(notes + executor.notes()), backend_details=run_record["backend_details"],
        )
    except (OSError, sqlite3.Error) as error:
        raise _output_error(error, out_dir, n_finished=n_done + written) from error
    finally:
        try:
            executor.close()
        finally:
            lock.close()


def plan_work(manifest: Manifest, conditions: Sequence[Condition], store: ResultStore, *, retry_failed: bool = True) -> tuple[np.ndarray, np.ndarray, Any]:
    """(manifest row, condition index) of every item not yet stored, utterance by utterance, and the
    stored keys that failed for a retryable reason and are planned again (with `retry_failed`).

    Done items are found column-wise (one membership test per condition), never as a set of
    Python tuples, so planning a million-row resume costs a fraction of a second.
    """
    import pyarrow.compute as pc

    n, k = len(manifest), len(conditions)
    todo = np.ones((n, k), dtype=bool)
    done = store.read_table(columns=["utterance_id", "condition_key", "status", "failure"])
    retrying = done.filter(retryable_mask(done)) if retry_failed else done.schema.empty_table()
    if retry_failed:
        done = done.filter(retryable_mask(done, invert=True))
    if done.num_rows:
        ids = manifest.table.column("id")
        for j, condition in enumerate(conditions):
            done_ids = done.filter(pc.equal(done.column("condition_key"), condition.key)).column("utterance_id")
            if len(done_ids):
                todo[:, j] = ~pc.is_in(ids, value_set=done_ids.combine_chunks()).to_numpy(zero_copy_only=False)
    rows, condition_indices = np.nonzero(todo)
    return rows.astype(np.int64), condition_indices.astype(np.int32), row_keys(retrying)


def _count_failed(table: Any) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(pc.equal(table.column("status"), "failed")).as_py() or 0)


def _count_cached(table: Any) -> int:
    import pyarrow.compute as pc

    # attempts=0: the transcript came from the cache, nothing was sent to the backend.
    return int(pc.sum(pc.equal(table.column("attempts"), 0)).as_py() or 0)


def _count_in(table: Any, keys: Any) -> int:
    import pyarrow.compute as pc

    if not len(keys):
        return 0
    return int(pc.sum(pc.is_in(row_keys(table), value_set=keys.combine_chunks() if hasattr(keys, "combine_chunks") else keys)).as_py() or 0)


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
    """`lock_run_dir`, with a folder that cannot be written reported as the run's output error."""
    try:
        return lock_run_dir(out_dir)
    except OSError as error:
        raise _output_error(error, out_dir, n_finished=0) from error


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


def audio_loader(rate_hz: int, *, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Callable[[Any], np.ndarray]:
    """The runner's cached decoder at `rate_hz`, for tools that must see exactly what a run fed the backend."""
    from harness.pipeline import AudioLoader

    return AudioLoader(rate_hz, max_duration_s=max_duration_s)


def babble_pool_for(utterance_id: str, candidates: Any, load: Callable[[Any], np.ndarray]) -> Callable[[int, np.random.Generator], list[np.ndarray]]:
    """Babble talkers for one utterance: other utterances of the manifest (see harness.pipeline)."""
    from harness.pipeline import babble_pool_for as pool_for

    return pool_for(utterance_id, candidates, load)


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
        "packages": {name: version for name in packages if (version := _version(name))},
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
