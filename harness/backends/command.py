"""Any command-line engine (whisper.cpp's whisper-cli, a NeMo script, a vendor's CLI) run per utterance or
per batch, without a shell.

The audio is written as 16-bit WAV at the stated rate after the noise condition was applied; the
command's stdout is the transcript, plain or as JSON with a "text" field.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from harness.backends.base import Backend, BackendOption, PermanentError, RetryableError, Transcript, TranscriptionError, TranscriptionRequest
from harness.errors import BackendError

MODES = ("utterance", "batch")
STDERR_TAIL_CHARS = 600
PLACEHOLDERS = ("{audio}", "{audios}", "{list}", "{rate}")


class CommandBackend(Backend):
    """Run an executable with the audio file in its arguments; stdout is the transcript.

    `cmd` is split like a shell would (shlex) but run without one, so no quoting or globbing reaches
    a shell. Placeholders: {audio} the WAV of one utterance (mode=utterance); {audios} every WAV of
    the batch as separate arguments, or {list} a file naming one WAV per line (mode=batch); {rate}
    the sample rate. In batch mode stdout holds one line per input, in order (plain text, or a JSON
    object with "text"), or one JSON array. A non-zero exit fails the utterance for good with the
    tail of stderr; a call past `timeout_s` is killed and fails it as retryable.
    """

    name = "command"
    summary = "Any executable run per utterance or per batch, without a shell; stdout (or JSON 'text') is the transcript."
    options = (
        BackendOption(name="cmd", help="the command line, e.g. 'whisper-cli -m model.bin -nt -f {audio}'"),
        BackendOption(name="mode", default="utterance", help="utterance (one call per {audio}) or batch (one call per batch: {audios} or {list})"),
        BackendOption(name="sample_rate_hz", default=16000, help="rate of the WAV files written"),
        BackendOption(name="timeout_s", default=600.0, help="seconds one call may take before it is killed"),
        BackendOption(name="max_concurrency", default=1, help="calls run at once in utterance mode"),
        BackendOption(name="output", default="auto", help="auto (JSON with 'text' if stdout parses as such, else plain text), text or json"),
    )

    def __init__(self, cmd: str, mode: str = "utterance", sample_rate_hz: str | int = 16000, timeout_s: str | float = 600.0, max_concurrency: str | int = 1, output: str = "auto", **unknown: str):
        if unknown:
            raise BackendError(f"command backend: unknown option(s) {', '.join(sorted(map(repr, unknown)))}. Known options: {', '.join(o.name for o in self.options)}.")
        try:
            self.argv = shlex.split(cmd)
        except ValueError as exc:
            raise BackendError(f"command backend: cmd={cmd!r} cannot be split into arguments ({exc}). Check its quotes.") from exc
        if not self.argv:
            raise BackendError("command backend: cmd is empty. Give the command line, e.g. --backend-arg cmd='whisper-cli -m model.bin -nt -f {audio}'.")
        if mode not in MODES:
            raise BackendError(f"command backend: mode={mode!r} is not one of {', '.join(MODES)}.")
        self.mode = mode
        joined = " ".join(self.argv)
        if mode == "utterance" and "{audio}" not in joined:
            raise BackendError(f"command backend: cmd={cmd!r} has no {{audio}} placeholder for the WAV file. Add it where the file name goes.")
        if mode == "batch" and "{audios}" not in self.argv and "{list}" not in joined:
            raise BackendError(f"command backend: in batch mode cmd={cmd!r} needs {{audios}} (as an argument of its own) or {{list}}.")
        executable = shutil.which(self.argv[0])
        if executable is None:
            raise BackendError(f"command backend: {self.argv[0]!r} is not an executable on PATH or a path to one. Check cmd.")
        self.executable = executable
        if output not in ("auto", "text", "json"):
            raise BackendError(f"command backend: output={output!r} is not one of auto, text, json.")
        self.output = output
        self.cmd = cmd
        self.sample_rate_hz = _whole("sample_rate_hz", sample_rate_hz, minimum=1000)
        self.concurrency = _whole("max_concurrency", max_concurrency, minimum=1)
        try:
            self.timeout_s = float(timeout_s)
        except (TypeError, ValueError):
            self.timeout_s = float("nan")
        if not self.timeout_s > 0:
            raise BackendError(f"command backend: timeout_s={timeout_s!r} is not a positive number of seconds.")
        self._pool: ThreadPoolExecutor | None = None

    def transcribe(self, batch: list[TranscriptionRequest]) -> list[Transcript | TranscriptionError]:
        if not batch:
            return []
        with tempfile.TemporaryDirectory(prefix="asrfair-command-") as directory:
            paths = [self._write(request, Path(directory), i) for i, request in enumerate(batch)]
            if self.mode == "batch":
                return self._run_batch(batch, paths, Path(directory))
            if self.concurrency == 1 or len(batch) == 1:
                results = []
                for finished, path in enumerate(paths, start=1):
                    results.append(self._run_one(path))
                    self.advance(finished)
                return results
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="asrfair-command")
            return list(self._pool.map(self._run_one, paths))

    def describe(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "argv": self.argv, "executable": self.executable, "mode": self.mode, "sample_rate_hz": self.sample_rate_hz,
                "timeout_s": self.timeout_s, "max_concurrency": self.concurrency, "output": self.output}

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "argv": self.argv, "executable": self.executable, "mode": self.mode, "sample_rate_hz": self.sample_rate_hz, "output": self.output}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _write(self, request: TranscriptionRequest, directory: Path, index: int) -> Path:
        if request.samples is None:
            raise BackendError(f"command backend: utterance {request.utterance_id!r} came without audio.")
        if request.sample_rate_hz != self.sample_rate_hz:
            raise BackendError(f"command backend: utterance {request.utterance_id!r} is at {request.sample_rate_hz} Hz, expected {self.sample_rate_hz} Hz.")
        # Named by position, never by utterance id: ids are data and may hold anything.
        path = directory / f"utt{index:06d}.wav"
        soundfile.write(str(path), np.clip(np.asarray(request.samples, dtype=np.float32), -1.0, 1.0), self.sample_rate_hz, subtype="PCM_16")
        return path

    def _argv(self, *, audio: Path | None = None, audios: list[Path] | None = None, listing: Path | None = None) -> list[str]:
        argv: list[str] = [self.executable]
        for token in self.argv[1:]:
            if token == "{audios}" and audios is not None:
                argv.extend(str(p) for p in audios)
                continue
            token = token.replace("{rate}", str(self.sample_rate_hz))
            if audio is not None:
                token = token.replace("{audio}", str(audio))
            if listing is not None:
                token = token.replace("{list}", str(listing))
            argv.append(token)
        return argv

    def _call(self, argv: list[str]) -> tuple[str, float]:
        """Run without a shell, in its own process group so a timeout kills the engine's children too."""
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise RetryableError(f"{Path(argv[0]).name} did not finish within timeout_s={self.timeout_s:g}; it was killed", attempts=1, latency_s=time.perf_counter() - started) from None
        latency_s = time.perf_counter() - started
        if process.returncode != 0:
            tail = stderr.decode("utf-8", errors="replace").strip()[-STDERR_TAIL_CHARS:] or "(nothing on stderr)"
            how = f"was killed by signal {-process.returncode}" if process.returncode < 0 else f"exited with status {process.returncode}"
            raise PermanentError(f"{Path(argv[0]).name} {how}; stderr ends: {tail}", attempts=1, latency_s=latency_s)
        return stdout.decode("utf-8", errors="replace"), latency_s

    def _run_one(self, path: Path) -> Transcript | TranscriptionError:
        try:
            stdout, latency_s = self._call(self._argv(audio=path))
            return Transcript(text=self._text(stdout), latency_s=latency_s, attempts=1)
        except TranscriptionError as error:
            return error
        except ValueError as error:
            return PermanentError(str(error), attempts=1)

    def _run_batch(self, batch: list[TranscriptionRequest], paths: list[Path], directory: Path) -> list[Transcript | TranscriptionError]:
        listing = directory / "inputs.txt"
        listing.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
        stdout, latency_s = self._call(self._argv(audios=paths, listing=listing))  # a failure fails the batch; the runner retries one by one
        texts = self._batch_texts(stdout)
        if len(texts) != len(batch):
            raise BackendError(f"command backend: {Path(self.executable).name} printed {len(texts)} transcripts for {len(batch)} inputs; batch mode needs one line (or array item) per input, in order.")
        self.advance(len(batch))
        # One call served the batch: each utterance gets its share of the time.
        return [Transcript(text=text, latency_s=latency_s / len(batch), attempts=1) for text in texts]

    def _batch_texts(self, stdout: str) -> list[str]:
        stripped = stdout.strip()
        if stripped.startswith("[") and self.output != "text":
            try:
                items = json.loads(stripped)
            except json.JSONDecodeError:
                items = None
            if isinstance(items, list):
                return [self._text(item if isinstance(item, str) else json.dumps(item), parsed=item) for item in items]
        lines = stdout.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        return [self._text(line) for line in lines]

    def _text(self, stdout: str, parsed: Any = None) -> str:
        text = stdout.strip()
        if self.output == "text":
            return " ".join(text.split())
        if parsed is None and text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                if self.output == "json":
                    raise ValueError(f"output=json but stdout is not JSON: {text[:200]!r}") from None
        if isinstance(parsed, dict):
            if not isinstance(parsed.get("text"), str):
                raise ValueError(f"JSON on stdout has no string 'text' field: {text[:200]!r}")
            return " ".join(parsed["text"].split())
        if isinstance(parsed, str):
            return " ".join(parsed.split())
        if self.output == "json":
            raise ValueError(f"output=json but stdout is not a JSON object with 'text': {text[:200]!r}")
        return " ".join(text.split())


def _whole(name: str, value: Any, *, minimum: int) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < minimum:
        raise BackendError(f"command backend: {name}={value!r} is not a whole number of at least {minimum}.")
    return int(text)
