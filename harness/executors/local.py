"""The default executor: the backend runs here, while threads prepare the next units' audio.

Audio is decoded, resampled and put under each condition in worker threads that fill a bounded
queue of ready units, so the backend never waits on preparation it could overlap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from harness.executors import BackendInfo, Job
from harness.pipeline import AudioLoader, PreparedUnit, prepare_unit, run_unit

if TYPE_CHECKING:
    from harness.backends import Backend, BackendFactory


class ThreadExecutor:
    name = "threads"

    def __init__(self, *, prep_workers: int = 2, prefetch_units: int = 4):
        self.prep_workers = max(1, prep_workers)
        self.prefetch_units = max(1, prefetch_units)
        self.backend: Backend | None = None

    def open(self, backend: Backend | BackendFactory, manifest_ids: list[str]) -> BackendInfo:
        from harness.backends import BackendFactory, describe_backend

        if isinstance(backend, BackendFactory):
            backend = backend.build()
        self.backend = backend
        backend.prepare(manifest_ids)
        return BackendInfo(name=backend.name, sample_rate_hz=backend.sample_rate_hz, details=describe_backend(backend), concurrency=int(backend.concurrency))

    def details(self) -> dict[str, Any]:
        from harness.backends import describe_backend

        return describe_backend(self.backend) if self.backend is not None else {}

    def stats(self) -> dict[str, Any]:
        return self.backend.stats() if self.backend is not None else {}

    def notes(self) -> list[str]:
        return self.backend.notes() if self.backend is not None else []

    def run(self, job: Job, *, cache: Any = None, within_unit: Callable[[int], None] | None = None) -> Iterator[pa.Table]:
        if self.backend is None:
            raise RuntimeError("ThreadExecutor.run before open")
        spec, backend = job.spec, self.backend
        scope = cache.scope(backend) if cache is not None else None
        load = AudioLoader(spec.sample_rate_hz, max_duration_s=spec.max_duration_s) if spec.sample_rate_hz is not None else None
        backend.set_progress(within_unit)
        try:
            with ThreadPoolExecutor(max_workers=self.prep_workers, thread_name_prefix="asrfair-prep") as pool:
                pending: deque[Future[PreparedUnit]] = deque()
                for unit in job.units():
                    pending.append(pool.submit(prepare_unit, unit, spec, load, job.candidates))
                    if len(pending) >= self.prefetch_units:
                        yield run_unit(pending.popleft().result(), backend, spec, scope)
                while pending:
                    yield run_unit(pending.popleft().result(), backend, spec, scope)
        finally:
            backend.set_progress(None)

    def close(self) -> None:
        # The backend is closed when the run ends, however it ends (it may hold processes or connections).
        if self.backend is not None:
            self.backend.close()
