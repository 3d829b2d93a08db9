"""The Ray Data executor: units of work spread over a Ray cluster (install with `asrfair[ray]`).

The pipeline: preparation (decode, resample, noise) as CPU tasks; transcription with map_batches
on a pool of actors (one backend each, built from the factory on its worker, with num_gpus per
actor for a GPU backend); scoring as CPU tasks. Result tables stream back to the driver, which
writes them to the store in groups, as the local executor's are. Every draw is keyed by (seed,
utterance, condition), so the rows do not depend on which worker did what. An actor that dies is
restarted and its batch retried by Ray (Ray Data's actor pools default to max_restarts=-1 and
max_task_retries=-1); a driver that dies loses only uncommitted rows, which a resumed run redoes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from harness.errors import ConfigError
from harness.executors import BackendInfo, Job
from harness.pipeline import PreparedUnit, Transcribed, WorkSpec, prepare_unit, score_unit, transcribe_unit

if TYPE_CHECKING:
    from harness.backends import BackendFactory
    from harness.pipeline import BabbleCandidates

NEEDS_RAY = "the ray executor needs Ray Data, which is not installed ({error}). Install it with `pip install 'asrfair[ray]'`."
NEEDS_FACTORY = "the ray executor builds a backend on each worker: pass a BackendFactory(name=..., options=...), not a backend instance."
# Columns a prepared row carries from the preparation tasks to the transcription actors.
SAMPLES, FAILURE, MESSAGE, HYPOTHESIS, DURATION, NOISE = "_samples", "_failure", "_message", "_hypothesis", "_audio_duration_s", "_noise_json"
FINAL_FAILURE, KIND, LATENCY, ATTEMPTS, SEED = "_final_failure", "_failure_kind", "_latency_s", "_attempts", "_noise_seed"
# Backends that can use a GPU, and the option that can keep them off it.
GPU_BACKENDS = {"transformers": "device"}
# CPUs reserved per preparation task (decode, resample, noise): half, so two run beside each actor.
PREPARATION_CPUS = 0.5


class RayExecutor:
    name = "ray"

    def __init__(self, *, address: str | None = None, workers: int = 1, gpus_per_worker: float | None = None, num_cpus: int | None = None):
        self.address = address
        self.workers = max(1, workers)
        self.gpus_per_worker = gpus_per_worker
        self.num_cpus = num_cpus
        self.factory: BackendFactory | None = None
        self._info: BackendInfo | None = None
        self._notes: list[str] = []
        self._started = False

    # -- the executor protocol ---------------------------------------------------------------

    def open(self, backend: Any, manifest_ids: list[str]) -> BackendInfo:
        from harness.backends import BackendFactory

        if not isinstance(backend, BackendFactory):
            raise ConfigError(NEEDS_FACTORY)
        ray = _ray()
        if not ray.is_initialized():
            # Connect to the cluster at --ray-address (or RAY_ADDRESS); with neither, start one here.
            # Ray's processes started here end with this one, even when it is killed.
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            # Workers' own output stays in Ray's session logs (/tmp/ray/session_latest/logs): a failing
            # task still raises here, and the terminal keeps our progress and messages readable.
            ray.init(address=address, num_cpus=None if address else self.num_cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            self._started = True
        _quiet_ray_data()
        self.factory = backend
        if self.gpus_per_worker is None:
            self.gpus_per_worker = _default_gpus(backend, ray.cluster_resources().get("GPU", 0))
        # Learn the backend's rate and provenance where it will run (a GPU worker, say), and let it
        # check the manifest (replay reports its coverage), before any work is planned.
        probe = ray.remote(num_cpus=1, num_gpus=self.gpus_per_worker)(_probe)
        name, rate_hz, details, concurrency, self._notes = ray.get(probe.remote(backend, manifest_ids))
        self._info = BackendInfo(name=name, sample_rate_hz=rate_hz, details=details, concurrency=concurrency)
        return self._info

    def details(self) -> dict[str, Any]:
        return self._info.details if self._info is not None else {}

    def stats(self) -> dict[str, Any]:
        return {}  # each actor counts for itself; not gathered

    def notes(self) -> list[str]:
        return list(self._notes)

    def run(self, job: Job, *, cache: Any = None, within_unit: Any = None) -> Iterator[pa.Table]:
        if self.factory is None:
            raise RuntimeError("RayExecutor.run before open")
        ray = _ray()
        import ray.data

        if not len(job):
            return
        spec = job.spec
        work = job_table(job)
        dataset = ray.data.from_arrow(work, override_num_blocks=max(1, min(-(-len(job) // job.unit_rows), 8 * self.workers)))
        if spec.sample_rate_hz is not None:
            # Ray Data fuses a task stage into the actor stage after it when their remote arguments
            # match, which would move decoding into the transcription actors, one batch after another.
            # `max_calls=0` is a task's default (a worker runs any number of tasks), but stated, it is
            # an argument the actors do not have, so the stages never fuse and preparation stays in its
            # own CPU tasks, running alongside (tests/test_ray_executor.py checks the plan).
            dataset = dataset.map_batches(
                prepare_batch, batch_size=spec.batch_size, batch_format="pyarrow", zero_copy_batch=True,
                fn_kwargs={"spec": spec, "candidates": job.candidates}, num_cpus=PREPARATION_CPUS, max_calls=0,
            )
        # An actor call costs milliseconds, so a backend that takes no audio gets whole units per call
        # (it is still called `batch_size` utterances at a time inside the actor).
        dataset = dataset.map_batches(
            Transcriber, batch_size=job.unit_rows, batch_format="pyarrow", zero_copy_batch=True,
            fn_constructor_kwargs={"factory": self.factory, "spec": spec},
            compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=actor_cpus(ray.cluster_resources().get("CPU", 1), self.workers),
            num_gpus=self.gpus_per_worker or None,
        )
        dataset = dataset.map_batches(score_batch, batch_size=None, batch_format="pyarrow", fn_kwargs={"spec": spec}, num_cpus=0.5)
        schema = spec.schema
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            yield _conform(batch, schema)

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False


# -- the stages (module-level, so Ray pickles them by reference) --------------------------------


def job_table(job: Job) -> pa.Table:
    """Every work row, with audio paths made absolute: a worker's working directory is not ours."""
    import pyarrow.compute as pc

    table = job.unit(0, len(job))
    audio = table.column("audio")
    relative = pc.invert(pc.starts_with(audio, "/")).fill_null(False)
    if pc.any(relative).as_py():
        absolute = pc.binary_join_element_wise(os.getcwd() + "/", audio, "")
        table = table.set_column(table.column_names.index("audio"), "audio", pc.if_else(relative, absolute, audio))
    return table


def prepare_batch(batch: pa.Table, *, spec: WorkSpec, candidates: BabbleCandidates | None) -> pa.Table:
    """Decode, resample and add noise; the audio travels on as a list column."""
    from harness.pipeline import AudioLoader

    prepared = prepare_unit(batch, spec, AudioLoader(spec.sample_rate_hz, max_duration_s=spec.max_duration_s), candidates)  # type: ignore[arg-type]
    samples = pa.array([None if s is None else np.asarray(s, dtype=np.float32) for s in prepared.samples], type=pa.large_list(pa.float32()))
    return (
        batch.append_column(SAMPLES, samples)
        .append_column(FAILURE, pa.array(prepared.errors, type=pa.string()))
        .append_column(DURATION, pa.array(prepared.durations_s, type=pa.float64()))
        .append_column(NOISE, pa.array(prepared.noise, type=pa.string()))
        .append_column(SEED, pa.array(prepared.seeds(), type=pa.int64()))
    )


def _prepared_of(batch: pa.Table) -> PreparedUnit:
    n = batch.num_rows
    samples: list[np.ndarray | None] = [None] * n
    if SAMPLES in batch.column_names:
        column = batch.column(SAMPLES).combine_chunks()
        valid = column.is_valid().to_pylist()
        offsets = column.offsets.to_numpy()
        values = column.values.to_numpy(zero_copy_only=False)
        # Views into the block Ray handed over: no copy of the audio (backends copy before they change it).
        samples = [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(n)]
    work = batch.drop_columns([name for name in (SAMPLES, FAILURE, DURATION, NOISE, SEED) if name in batch.column_names])
    return PreparedUnit(work=work, samples=samples, errors=_column_or_none(batch, FAILURE), durations_s=_column_or_none(batch, DURATION),
                        noise=_column_or_none(batch, NOISE), noise_seeds=_column_or_none(batch, SEED))


def _column_or_none(batch: pa.Table, name: str) -> list[Any]:
    return batch.column(name).to_pylist() if name in batch.column_names else [None] * batch.num_rows


class Transcriber:
    """One backend per actor, built on the actor's worker from the factory."""

    def __init__(self, *, factory: BackendFactory, spec: WorkSpec):
        self.backend = factory.build()
        self.spec = spec

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = transcribe_unit(_prepared_of(batch), self.backend, self.spec)
        table = batch.drop_columns([SAMPLES]) if SAMPLES in batch.column_names else batch
        for name, values, kind in _transcribed_columns(out):
            table = table.append_column(name, pa.array(values, type=kind))
        return table


def _transcribed_columns(out: Transcribed) -> list[tuple[str, list[Any], pa.DataType]]:
    return [
        (HYPOTHESIS, out.texts, pa.string()), (MESSAGE, out.messages, pa.string()), (FINAL_FAILURE, out.failures, pa.string()),
        (KIND, out.kinds, pa.string()), (LATENCY, out.latency_s, pa.float64()), (ATTEMPTS, out.attempts, pa.int64()),
    ]


def score_batch(batch: pa.Table, *, spec: WorkSpec) -> pa.Table:
    transcribed_names = [HYPOTHESIS, MESSAGE, FINAL_FAILURE, KIND, LATENCY, ATTEMPTS]
    prepared = _prepared_of(batch.drop_columns(transcribed_names))
    texts, messages, failures, kinds, latency, attempts = (batch.column(name).to_pylist() for name in transcribed_names)
    return score_unit(prepared, Transcribed(texts=texts, messages=messages, failures=failures, kinds=kinds, latency_s=latency, attempts=attempts), spec)


def _probe(factory: BackendFactory, manifest_ids: list[str]) -> tuple[str, int | None, dict[str, Any], int, list[str]]:
    from harness.backends import describe_backend

    backend = factory.build()
    try:
        backend.prepare(manifest_ids)
        return backend.name, backend.sample_rate_hz, describe_backend(backend), int(backend.concurrency), backend.notes()
    finally:
        backend.close()


# -- helpers -------------------------------------------------------------------------------------


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part we need, and a separate extra of ray
    except ImportError as error:
        raise ConfigError(NEEDS_RAY.format(error=error)) from error
    return ray


def _quiet_ray_data() -> None:
    import ray.data

    # The CLI shows its own progress; Ray Data's bars and per-run statistics would interleave with it.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    context.execution_options.preserve_order = False


def actor_cpus(cluster_cpus: float, workers: int) -> float:
    """CPUs reserved per transcription actor: one, unless the actors would then hold every CPU.

    Ray reserves CPUs, it does not confine work to them: actors holding all of a 2-CPU machine would
    leave no CPU for a preparation task, and the pipeline would wait forever. So at least one CPU
    stays free for preparation and scoring.
    """
    return max(0.25, min(1.0, (cluster_cpus - 1.0) / workers))


def _default_gpus(factory: BackendFactory, cluster_gpus: float) -> float:
    """One GPU per actor for a backend that uses one, when the cluster has GPUs and the options allow."""
    option = GPU_BACKENDS.get(factory.name)
    if option is None or cluster_gpus < 1:
        return 0.0
    device = str(factory.options.get(option, "auto")).lower()
    return 0.0 if device in ("cpu", "mps") else 1.0


def _conform(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    from harness.store import conform

    return conform(batch, schema)
