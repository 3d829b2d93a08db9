"""The contract every backend implements: what the runner may ask of it, and how it reports failure.

A backend is batch in, batch out. Each item of the answer is a transcript (a string, or a
`Transcript` with latency and attempts) or a `TranscriptionError` saying why that one utterance
failed and whether trying it again later could succeed.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

import numpy as np

from harness.errors import HarnessError


@dataclass(frozen=True, kw_only=True)
class TranscriptionRequest:
    """One utterance handed to a backend: mono float32 audio at `sample_rate_hz`, or no audio for replay."""

    utterance_id: str
    samples: np.ndarray | None
    sample_rate_hz: int | None
    condition: str = "clean"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.samples is None or not self.sample_rate_hz:
            return None
        return len(self.samples) / self.sample_rate_hz


@dataclass(frozen=True, kw_only=True)
class Transcript:
    """A transcript with what the backend measured getting it.

    `latency_s` is the time of the request that produced the text (for an HTTP backend, the last
    attempt); `attempts` counts requests sent, retries included; `note` is stored with the row
    (e.g. a replayed utterance that had no hypothesis).
    """

    text: str
    latency_s: float | None = None
    attempts: int | None = None
    note: str | None = None


class TranscriptionError(HarnessError):
    """One utterance failed. `retryable` says whether a later attempt could succeed.

    Carries the attempts made and, when known, the latency of the last one, so a failure is
    accounted for like a success.
    """

    retryable: ClassVar[bool] = False
    kind: ClassVar[str] = "permanent"

    def __init__(self, message: str, *, attempts: int | None = None, latency_s: float | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.latency_s = latency_s


class RetryableError(TranscriptionError):
    """Failed for a reason that may pass (rate limit, overload, timeout, dropped connection).
    `asrfair run --resume` tries these again unless given --no-retry-failed."""

    retryable = True
    kind = "retryable"


class PermanentError(TranscriptionError):
    """Failed for a reason tied to this input (rejected audio, too large, unprocessable): kept on resume."""

    retryable = False
    kind = "permanent"


class FatalBackendError(HarnessError):
    """No further utterance can succeed (credentials refused, wrong URL or model): the run stops.

    Nothing is recorded for the batch in hand, so after fixing the cause `--resume` sends it again.
    """


Result = Union[str, Transcript, TranscriptionError]


@dataclass(frozen=True, kw_only=True)
class BackendOption:
    """One `--backend-arg` a backend takes, for `asrfair backends`."""

    name: str
    help: str
    default: Any = None


class Backend(ABC):
    """Batch in, batch out. Subclass it and register the class (see harness.backends).

    Class attributes:
      name: the registry name, recorded in run.json.
      sample_rate_hz: the rate audio arrives at; None means the backend takes no audio (replay), so
        the runner decodes nothing and refuses noise profiles.
      concurrency: how many utterances the backend works on at once inside one `transcribe` call
        (requests in flight for an HTTP API). The runner makes its default batch at least this large,
        so the backend is never starved by small batches.
      extra: the pip extra that installs what it needs (`pip install 'asrfair[EXTRA]'`).
      requires: importable module names that must be installed; checked without importing them.
      options: the keyword arguments `__init__` takes, with help, for `asrfair backends`.

    `transcribe` returns one item per request, in order: the text, a `Transcript`, or a
    `TranscriptionError` for an utterance that failed alone. Raising fails the whole batch (the
    runner then retries it one utterance at a time); raising `FatalBackendError` stops the run.
    """

    name: ClassVar[str] = "backend"
    sample_rate_hz: int | None = 16000
    concurrency: int = 1
    extra: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[BackendOption, ...]] = ()
    summary: ClassVar[str] = ""
    _progress_callback: Callable[[int], None] | None = None

    @abstractmethod
    def transcribe(self, batch: list[TranscriptionRequest]) -> list[Result]:
        """One result per request, in order."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able settings and versions for the run's provenance. Never a secret."""

    def prepare(self, utterance_ids: Iterable[str]) -> None:  # noqa: B027 - optional hook, default does nothing
        """Called once with every manifest id before any transcription (replay checks coverage here)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release processes, connections and threads. The runner always calls it, on error and interrupt too."""

    def set_progress(self, callback: Callable[[int], None] | None) -> None:
        """The runner's hook for progress inside a long batch: call `self.advance(n)` with the number
        of the batch's utterances finished so far."""
        self._progress_callback = callback

    def advance(self, n_finished: int) -> None:
        if self._progress_callback is not None:
            self._progress_callback(n_finished)

    def stats(self) -> dict[str, Any]:
        """Counters for this session (requests, retries, failures by class), stored in run.json."""
        return {}

    def notes(self) -> list[str]:
        """Lines worth telling the user after a run (replay coverage, retry counts)."""
        return []

    def identity(self) -> dict[str, Any]:
        """What decides this backend's transcripts, for the transcript cache key.

        Defaults to the name and `describe()`; override to leave out what does not change a
        transcript (counters, coverage, concurrency).
        """
        return {"name": self.name, **self.describe()}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def option_specs(cls) -> tuple[BackendOption, ...]:
        """The declared options, or, for a backend that declares none, its `__init__` keywords."""
        if cls.options:
            return cls.options
        specs = []
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.name == "self" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                continue
            default = None if parameter.default is inspect.Parameter.empty else parameter.default
            specs.append(BackendOption(name=parameter.name, help="", default=default))
        return tuple(specs)


def option_defaults(options: tuple[BackendOption, ...]) -> Mapping[str, Any]:
    return {option.name: option.default for option in options}
