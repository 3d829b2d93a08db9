"""CMU PocketSphinx 5 backend: a small, CPU-only, dependency-free baseline recogniser.

Defaults to the US English model shipped inside the `pocketsphinx` wheel; any decoder parameter can be overridden.
"""

from __future__ import annotations

import contextlib
import difflib
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import sys
import threading
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pocketsphinx

from harness.backends.base import Backend, BackendOption, TranscriptionRequest
from harness.errors import BackendError

_MODEL_PATHS = ("hmm", "lm", "dict")
# PocketSphinx refuses two searches at once, so naming any of these replaces the bundled language model.
_OTHER_SEARCHES = ("jsgf", "fsg", "keyphrase", "kws", "allphone", "lmctl")


class PocketsphinxBackend(Backend):
    """Decode each request as one whole utterance with PocketSphinx.

    Keyword options arrive as strings from `--backend-arg KEY=VALUE`: `hmm`, `lm` and `dict` name model
    files replacing the bundled US English ones; any other PocketSphinx parameter (`beam`, `lw`, ...) is
    passed through and converted by PocketSphinx itself. An utterance with no hypothesis gives "".
    """

    name = "pocketsphinx"
    sample_rate_hz = 16000
    requires = ("pocketsphinx",)
    summary = "CMU PocketSphinx 5, CPU only; the wheel ships a US English model, so it runs offline."
    options = (
        BackendOption(name="processes", default="auto", help="decoder processes a batch is split across (auto: one per core, at most 8)"),
        BackendOption(name="hmm", help="acoustic model directory (default: the bundled en-us)"),
        BackendOption(name="lm", help="language model file (default: the bundled en-us.lm.bin)"),
        BackendOption(name="dict", help="pronunciation dictionary (default: the bundled cmudict-en-us.dict)"),
        BackendOption(name="ANY", help="any other PocketSphinx decoder parameter, e.g. beam=1e-60 or lw=6.5"),
    )

    def __init__(self, processes: str | int = "auto", **options: str):
        self.processes = _parse_processes(processes)
        probe = pocketsphinx.Config()
        for key, value in options.items():
            if key not in probe:
                close = difflib.get_close_matches(key, list(probe), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise BackendError(
                    f"pocketsphinx: unknown option {key!r} (value {value!r}).{hint} "
                    "Use hmm=, lm=, dict= or another PocketSphinx decoder parameter."
                )
            # Check the value's type now: the decoder is built lazily, and a bad number found then
            # would fail every batch of the run instead of the command line.
            try:
                probe[key] = str(value)
            except (ValueError, TypeError) as exc:
                raise BackendError(f"pocketsphinx: option {key!r} has unusable value {value!r} ({exc}). Fix the --backend-arg.") from exc
            if key == "samprate" and str(value) != str(self.sample_rate_hz):
                raise BackendError(
                    f"pocketsphinx: option 'samprate' is {value!r} but audio is always resampled to "
                    f"{self.sample_rate_hz} Hz. Drop --backend-arg samprate."
                )
            if key in _MODEL_PATHS and value and not Path(value).exists():
                raise BackendError(f"pocketsphinx: option {key!r} names {value!r}, which does not exist. Check the path.")
        model_dir = Path(pocketsphinx.get_model_path()) / "en-us"
        self._args: dict[str, str] = {
            "hmm": str(model_dir / "en-us"),
            "lm": str(model_dir / "en-us.lm.bin"),
            "dict": str(model_dir / "cmudict-en-us.dict"),
            # Runs of digital zeros make every frame tie, and the tie is then broken by state left from
            # the previous utterance (silence decoded as "dog" or as ""); seeded dither breaks the tie
            # the same way every time. Measured: no change on the CMU ARCTIC clips.
            "dither": "yes",
            "seed": "1",
            **{key: str(value) for key, value in options.items()},
        }
        if "lm" not in options and any(key in options for key in _OTHER_SEARCHES):
            del self._args["lm"]
        self._options = dict(options)
        self._decoder = None
        self._pool = None

    def _get_decoder(self):
        # Building a decoder reads the model (about 0.3 s); do it on first use, once per instance.
        if self._decoder is None:
            try:
                self._decoder = pocketsphinx.Decoder(
                    **{"loglevel": "FATAL", "logfn": os.devnull, **self._args, "samprate": str(self.sample_rate_hz)}
                )
            except (ValueError, RuntimeError) as exc:
                raise BackendError(
                    f"pocketsphinx: cannot build a decoder from {self._args} ({exc}). Check the model paths and option values."
                ) from exc
        return self._decoder

    def transcribe(self, batch: list[TranscriptionRequest]) -> list[str]:
        """Decode a batch, split into contiguous chunks across `processes` decoder processes.

        PocketSphinx decodes on one core and holds the GIL, so processes are the only way to use more
        cores. Each utterance is decoded from a reset front end, so the split does not change results.
        """
        if self.processes <= 1 or len(batch) <= 1:
            return self._decode(batch)
        if self._pool is None:
            # spawn, not fork: the runner's audio threads are running, and forking a threaded process can deadlock.
            self._pool = ProcessPoolExecutor(max_workers=self.processes, mp_context=_WORKER_CONTEXT, initializer=_start_worker, initargs=(self._options,))
        size = -(-len(batch) // self.processes)
        chunks = [batch[i : i + size] for i in range(0, len(batch), size)]
        try:
            return [text for texts in self._pool.map(_decode_in_worker, chunks) for text in texts]
        except BrokenProcessPool:
            # A decoder process died (killed, out of memory). The runner retries this batch one utterance at a
            # time, in this process; the next batch gets a fresh pool.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown may already have torn down the executor machinery
            pass

    def _decode(self, batch: list[TranscriptionRequest]) -> list[str]:
        decoder = self._get_decoder()
        texts = []
        for request in batch:
            if request.samples is None:
                raise BackendError(f"pocketsphinx: utterance {request.utterance_id!r} came without audio. PocketSphinx needs samples.")
            if request.sample_rate_hz not in (None, self.sample_rate_hz):
                raise BackendError(
                    f"pocketsphinx: utterance {request.utterance_id!r} is at {request.sample_rate_hz} Hz, "
                    f"expected {self.sample_rate_hz} Hz. Load it with harness.audio.load_audio(path, 16000)."
                )
            pcm = (np.clip(np.asarray(request.samples, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
            if pcm.size == 0:
                texts.append("")  # pocketsphinx raises IndexError on an empty buffer
                continue
            # The front end carries its noise-floor and cepstral-mean estimates over from the previous
            # utterance; resetting it (0.1 ms) makes each result independent of batch order and size.
            decoder.reinit_feat()
            decoder.start_utt()
            decoder.process_raw(pcm.tobytes(), full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
            texts.append(hypothesis.hypstr.strip() if hypothesis is not None else "")
        return texts

    def identity(self) -> dict[str, Any]:
        # The number of decoder processes does not change a transcript (each utterance decodes from a reset front end).
        return {"name": self.name, "args": dict(self._args), "pocketsphinx_version": self.describe()["pocketsphinx_version"]}

    def describe(self) -> dict[str, Any]:
        try:
            package_version = version("pocketsphinx")
        except PackageNotFoundError:
            package_version = "unknown"
        return {"args": dict(self._args), "processes": self.processes, "sample_rate_hz": self.sample_rate_hz, "pocketsphinx_version": package_version}


def _parse_processes(value: str | int) -> int:
    if value == "auto":
        return max(1, min(os.cpu_count() or 1, 8))
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise BackendError(f"pocketsphinx: processes={value!r} must be a positive whole number or 'auto'. Use e.g. --backend-arg processes=2.")
    return count


@contextlib.contextmanager
def _main_module_hidden():
    """While a decoder process starts, show multiprocessing a __main__ with no file.

    spawn re-runs the parent's main script in every child so that functions defined there can be
    unpickled. Ours live in this module, and re-running a script that calls asrfair without
    `if __name__ == "__main__":` would start a second evaluation (and more processes) in every worker.
    With no __file__ and no __spec__, multiprocessing leaves __main__ alone, as for an interactive session.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class _DecoderProcess(multiprocessing.context.SpawnProcess):
    """A spawned decoder process that never imports the user's main script."""

    def start(self) -> None:
        with _main_module_hidden():
            super().start()


class _DecoderContext(multiprocessing.context.SpawnContext):
    Process = _DecoderProcess


_WORKER_CONTEXT = _DecoderContext()
_worker_backend: PocketsphinxBackend | None = None


def _start_worker(options: dict[str, str]) -> None:
    global _worker_backend
    # Ctrl-C reaches the whole process group: the parent finishes its batch and stops, so the workers
    # must keep decoding rather than die and fail the batch in hand.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), name="asrfair-parent-watch", daemon=True).start()
    _worker_backend = PocketsphinxBackend(processes=1, **options)


def _exit_with_parent(parent_sentinel: int) -> None:
    """Exit as soon as the parent is gone, however it went (kill -9 included), instead of waiting as an orphan."""
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(1)


def _decode_in_worker(batch: list[TranscriptionRequest]) -> list[str]:
    if _worker_backend is None:
        raise BackendError("pocketsphinx: a decoder process started without its decoder. Retry with --backend-arg processes=1.")
    return _worker_backend._decode(batch)
