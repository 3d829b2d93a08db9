"""Executors: where a run's units of work are prepared, transcribed and scored.

The runner plans the work (what is not yet stored) and persists results; an executor turns
units of work into result tables. `threads` (the default) runs here, preparing audio in threads
ahead of the backend; `ray` runs on a Ray cluster (harness.executors.ray, extra `asrfair[ray]`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from harness.errors import ConfigError
from harness.manifest_table import TAG_PREFIX
from harness.pipeline import CONDITION_INDEX, WORK_COLUMNS, BabbleCandidates, WorkSpec

if TYPE_CHECKING:
    from harness.backends import Backend, BackendFactory

EXECUTORS = ("threads", "ray")
UNKNOWN_EXECUTOR = "unknown executor {name!r}. Choose one of: {choices}."
# A backend that takes no audio (replay) is cheap per row, so it gets big units: per-unit costs
# (slicing the manifest, a scoring call, a thread hand-off) vanish against thousands of rows.
NO_AUDIO_UNIT_ROWS = 4096


@dataclass(frozen=True, kw_only=True)
class BackendInfo:
    """What the driver must know about a backend before planning, however it was built."""

    name: str
    sample_rate_hz: int | None
    details: dict[str, Any]  # describe(), for run.json
    concurrency: int = 1  # utterances the backend works on at once (the default batch is at least this)


@dataclass(frozen=True, kw_only=True)
class Job:
    """The planned work: manifest rows x conditions not yet stored, in manifest order."""

    manifest: pa.Table
    rows: np.ndarray  # manifest row of each work item
    condition_indices: np.ndarray  # index into spec.conditions of each work item
    spec: WorkSpec
    candidates: BabbleCandidates | None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def unit_rows(self) -> int:
        return self.spec.batch_size if self.spec.sample_rate_hz is not None else max(self.spec.batch_size, NO_AUDIO_UNIT_ROWS)

    def unit(self, start: int, stop: int) -> pa.Table:
        """Work rows [start, stop) as a table: the manifest columns a worker needs, plus the condition."""
        columns = [*WORK_COLUMNS, *(name for name in self.manifest.column_names if name.startswith(TAG_PREFIX))]
        rows = self.manifest.select(columns).take(pa.array(self.rows[start:stop]))
        return rows.append_column(CONDITION_INDEX, pa.array(self.condition_indices[start:stop], type=pa.int32()))

    def units(self) -> Iterator[pa.Table]:
        size = self.unit_rows
        for start in range(0, len(self), size):
            yield self.unit(start, min(start + size, len(self)))


class Executor(Protocol):
    """Opens a backend (or learns about it), then turns a job into result tables, in any order.

    `run` may take a transcript cache and a callback for progress inside a unit; an executor that
    cannot use them says so in `open` or ignores the callback. `close` closes the backend.
    """

    name: str

    def open(self, backend: Backend | BackendFactory, manifest_ids: list[str]) -> BackendInfo: ...

    def run(self, job: Job, *, cache: Any = None, within_unit: Callable[[int], None] | None = None) -> Iterator[pa.Table]: ...

    def details(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...

    def notes(self) -> list[str]: ...

    def close(self) -> None: ...


def get_executor(name: str, *, workers: int = 2, prefetch_units: int = 4, ray_address: str | None = None, gpus_per_worker: float | None = None) -> Executor:
    """The executor registered as `name`; Ray is imported only when asked for."""
    if name == "threads":
        from harness.executors.local import ThreadExecutor

        return ThreadExecutor(prep_workers=workers, prefetch_units=prefetch_units)
    if name == "ray":
        from harness.executors.ray import RayExecutor

        return RayExecutor(address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker)
    raise ConfigError(UNKNOWN_EXECUTOR.format(name=name, choices=", ".join(EXECUTORS)))
