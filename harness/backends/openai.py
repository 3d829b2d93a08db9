"""Any OpenAI-compatible transcription API (`POST /v1/audio/transcriptions`): OpenAI, vLLM, speaches,
LocalAI, whisper.cpp's server in OpenAI mode, or `asrfair serve`.

Every utterance is accounted for: it succeeds, or fails as retryable (rate limit, overload, timeout,
dropped connection, garbled answer, once its retries are spent) or permanent (the server rejected
this input). Rejected credentials or an unknown model stop the run instead, since no utterance
could succeed. The API key is read from the environment and never written anywhere.
"""

from __future__ import annotations

import email.utils
import io
import json
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import soundfile

from harness.backends.base import (
    Backend,
    BackendOption,
    FatalBackendError,
    PermanentError,
    RetryableError,
    Transcript,
    TranscriptionError,
    TranscriptionRequest,
)
from harness.errors import BackendError

RESPONSE_FORMATS = ("json", "verbose_json", "text")
AUDIO_FORMATS = {"flac": ("FLAC", "audio/flac"), "wav": ("WAV", "audio/wav")}
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Statuses that hold for every utterance, not this one: the run stops rather than record each as failed.
FATAL_STATUSES = {401: "the API key was refused", 403: "access was refused", 404: "the URL or model was not found"}
SERVER_MESSAGE_CHARS = 300
REDACTED = "<redacted>"


@dataclass
class _Retry(Exception):
    """One attempt failed in a way another attempt may not (internal to the retry loop)."""

    reason: str  # "429", "503", "timeout", "connection", "malformed", ...
    message: str
    retry_after_s: float | None = None
    latency_s: float | None = None


class OpenAIBackend(Backend):
    """An OpenAI-compatible transcription endpoint, many requests in flight, retried with backoff.

    Audio is encoded in memory (FLAC by default) after the noise condition was applied. 429, 408,
    500, 502, 503, 504, timeouts, dropped connections and unreadable answers are retried with
    exponential backoff and full jitter, waiting at least what `Retry-After` asks (seconds or an HTTP
    date), up to `max_retries` per utterance and a retry budget per session. 400, 413, 422 and any
    other refusal fail that utterance for good with the server's message; 401, 403 and 404 stop the run.
    """

    name = "openai"
    requires = ("httpx", "tenacity")
    summary = "Any OpenAI-compatible POST /v1/audio/transcriptions (OpenAI, vLLM, speaches, LocalAI, `asrfair serve`), with retries, backoff and accounting."
    options = (
        BackendOption(name="base_url", help="API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1 (/v1 is added to a bare host)"),
        BackendOption(name="model", default="whisper-1", help="model name sent with each request"),
        BackendOption(name="api_key_env", default="OPENAI_API_KEY", help="environment variable holding the key (the key itself is never an option)"),
        BackendOption(name="language", help="ISO-639-1 language code sent with each request"),
        BackendOption(name="prompt", help="prompt text sent with each request"),
        BackendOption(name="temperature", help="sampling temperature sent with each request"),
        BackendOption(name="response_format", default="json", help="json, verbose_json or text"),
        BackendOption(name="timeout_s", default=60.0, help="seconds to wait for one answer"),
        BackendOption(name="max_concurrency", default=8, help="requests in flight at once (one pooled connection each)"),
        BackendOption(name="max_requests_per_s", help="cap on requests started per second, retries included"),
        BackendOption(name="audio_format", default="flac", help="flac or wav (16-bit PCM either way)"),
        BackendOption(name="sample_rate_hz", default=16000, help="rate the audio is resampled to before encoding"),
        BackendOption(name="max_upload_mb", default=25.0, help="largest encoded file sent; a larger one fails that utterance"),
        BackendOption(name="max_retries", default=6, help="retries per utterance after the first attempt"),
        BackendOption(name="retry_budget", default=0.5, help="retries per session may not exceed 20 + this x requests sent"),
        BackendOption(name="backoff_s", default=0.5, help="first backoff; doubles each retry, with full jitter"),
        BackendOption(name="max_backoff_s", default=30.0, help="longest backoff between two attempts"),
        BackendOption(name="max_retry_after_s", default=300.0, help="a longer Retry-After fails the utterance (retryable) instead of waiting"),
    )

    def __init__(
        self,
        base_url: str,
        model: str = "whisper-1",
        api_key_env: str = "OPENAI_API_KEY",
        language: str | None = None,
        prompt: str | None = None,
        temperature: str | float | None = None,
        response_format: str = "json",
        timeout_s: str | float = 60.0,
        max_concurrency: str | int = 8,
        max_requests_per_s: str | float | None = None,
        audio_format: str = "flac",
        sample_rate_hz: str | int = 16000,
        max_upload_mb: str | float = 25.0,
        max_retries: str | int = 6,
        retry_budget: str | float = 0.5,
        backoff_s: str | float = 0.5,
        max_backoff_s: str | float = 30.0,
        max_retry_after_s: str | float = 300.0,
        **unknown: str,
    ):
        if unknown:
            known = ", ".join(option.name for option in self.options)
            if any(key.lower() in ("api_key", "key", "token") for key in unknown):
                raise BackendError(f"openai backend: the API key is never a --backend-arg (it would be stored in run.json). Put it in an environment variable and name that with api_key_env=NAME (default OPENAI_API_KEY). Known options: {known}.")
            raise BackendError(f"openai backend: unknown option(s) {', '.join(sorted(map(repr, unknown)))}. Known options: {known}.")
        import httpx

        self.base_url = _normalise_base_url(base_url)
        self.url = self.base_url + "/audio/transcriptions"
        self.model = model
        self.api_key_env = api_key_env
        self.language = language or None
        self.prompt = prompt or None
        self.temperature = None if temperature in (None, "") else _number("temperature", temperature, minimum=0.0)
        if response_format not in RESPONSE_FORMATS:
            raise BackendError(f"openai backend: response_format={response_format!r} is not one of {', '.join(RESPONSE_FORMATS)} (subtitle formats carry no plain transcript).")
        self.response_format = response_format
        if audio_format not in AUDIO_FORMATS:
            raise BackendError(f"openai backend: audio_format={audio_format!r} is not one of {', '.join(AUDIO_FORMATS)}.")
        self.audio_format = audio_format
        self.timeout_s = _number("timeout_s", timeout_s, minimum=0.001)
        self.concurrency = int(_number("max_concurrency", max_concurrency, minimum=1, whole=True))
        self.max_requests_per_s = None if max_requests_per_s in (None, "") else _number("max_requests_per_s", max_requests_per_s, minimum=0.001)
        self.sample_rate_hz = int(_number("sample_rate_hz", sample_rate_hz, minimum=1000, whole=True))
        self.max_upload_bytes = int(_number("max_upload_mb", max_upload_mb, minimum=0.001) * 1024 * 1024)
        self.max_retries = int(_number("max_retries", max_retries, minimum=0, whole=True))
        self.retry_budget = _number("retry_budget", retry_budget, minimum=0.0)
        self.backoff_s = _number("backoff_s", backoff_s, minimum=0.0)
        self.max_backoff_s = _number("max_backoff_s", max_backoff_s, minimum=0.0)
        self.max_retry_after_s = _number("max_retry_after_s", max_retry_after_s, minimum=0.0)

        # The key lives only in the client's headers and in this private attribute, used to scrub it
        # from anything a server sends back (OpenAI echoes part of a refused key).
        self._secret = os.environ.get(api_key_env) or None if api_key_env else None
        headers = {"Authorization": f"Bearer {self._secret}"} if self._secret else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout_s),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )
        self._httpx = httpx
        self._pool: ThreadPoolExecutor | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._jitter = random.Random()  # timing only: never decides what an utterance is scored as
        self._stats: dict[str, Any] = {"requests": 0, "retries": 0, "succeeded": 0, "failed": {"retryable": 0, "permanent": 0}, "by_reason": {}}

    # -- the contract -------------------------------------------------------------------------

    def transcribe(self, batch: list[TranscriptionRequest]) -> list[Transcript | TranscriptionError]:
        if not batch:
            return []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="asrfair-openai")
        futures = {self._pool.submit(self._transcribe_one, request): i for i, request in enumerate(batch)}
        results: list[Any] = [None] * len(batch)
        fatal: FatalBackendError | None = None
        for finished, future in enumerate(as_completed(futures), start=1):
            try:
                results[futures[future]] = future.result()
            except FatalBackendError as error:
                fatal = fatal or error
                self._closing.set()  # the other requests stop retrying; the run stops
            self.advance(finished)
        if fatal is not None:
            raise fatal
        return results

    def describe(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env, "api_key_set": self._secret is not None,
            "language": self.language, "prompt": self.prompt, "temperature": self.temperature, "response_format": self.response_format,
            "audio_format": self.audio_format, "sample_rate_hz": self.sample_rate_hz, "timeout_s": self.timeout_s, "max_concurrency": self.concurrency,
            "max_requests_per_s": self.max_requests_per_s, "max_upload_bytes": self.max_upload_bytes, "max_retries": self.max_retries,
            "retry_budget": self.retry_budget, "backoff_s": self.backoff_s, "max_backoff_s": self.max_backoff_s, "max_retry_after_s": self.max_retry_after_s,
            "httpx_version": _version("httpx"), "tenacity_version": _version("tenacity"),
        }

    def identity(self) -> dict[str, Any]:
        # What reaches the model; not how patiently we ask.
        return {"name": self.name, "base_url": self.base_url, "model": self.model, "language": self.language, "prompt": self.prompt,
                "temperature": self.temperature, "audio_format": self.audio_format, "sample_rate_hz": self.sample_rate_hz}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._stats))

    def notes(self) -> list[str]:
        s = self.stats()
        if not s["requests"]:
            return []
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(s["by_reason"].items()))
        return [f"openai: {s['requests']} requests, {s['retries']} retries, {s['failed']['retryable']} failed retryable, {s['failed']['permanent']} failed permanent"
                + (f" (attempts that failed, by reason: {reasons})" if reasons else "") + "."]

    def close(self) -> None:
        self._closing.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._client.close()

    # -- one utterance ------------------------------------------------------------------------

    def _transcribe_one(self, request: TranscriptionRequest) -> Transcript | TranscriptionError:
        from tenacity import RetryCallState, Retrying, retry_if_exception_type

        if request.samples is None:
            return self._failed(PermanentError(f"utterance {request.utterance_id!r} has no audio; the openai backend sends audio."))
        payload = encode_audio(request.samples, self.sample_rate_hz, self.audio_format)
        if len(payload) > self.max_upload_bytes:
            return self._failed(PermanentError(
                f"utterance {request.utterance_id!r} is {len(payload) / 1024 / 1024:.1f} MiB as {self.audio_format.upper()}, over the "
                f"{self.max_upload_bytes / 1024 / 1024:g} MiB upload limit. Split the audio, or raise max_upload_mb if the server accepts more.",
                attempts=0,
            ))

        def stop(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome is not None else None
            if state.attempt_number > self.max_retries or self._closing.is_set():
                return True
            if isinstance(error, _Retry) and error.retry_after_s is not None and error.retry_after_s > self.max_retry_after_s:
                return True
            return not self._take_retry_budget()

        retrying = Retrying(stop=stop, wait=self._wait, retry=retry_if_exception_type(_Retry), sleep=self._sleep, reraise=True)
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    text, latency_s = self._attempt(payload)
        except _Retry as error:
            detail = error.message
            if error.retry_after_s is not None and error.retry_after_s > self.max_retry_after_s:
                detail += f"; the server asked to wait {error.retry_after_s:g} s (Retry-After), more than max_retry_after_s={self.max_retry_after_s:g}"
            elif self._closing.is_set():
                detail += "; the run was stopping"
            return self._failed(RetryableError(f"{detail} (after {attempts} attempt{'s' if attempts != 1 else ''})", attempts=attempts, latency_s=error.latency_s))
        except PermanentError as error:
            return self._failed(PermanentError(str(error), attempts=attempts, latency_s=error.latency_s))
        with self._lock:
            self._stats["succeeded"] += 1
        return Transcript(text=text, latency_s=latency_s, attempts=attempts)

    def _attempt(self, payload: bytes) -> tuple[str, float]:
        """Send one request. Returns (text, latency); raises _Retry, PermanentError or FatalBackendError."""
        httpx = self._httpx
        self._pace()
        if self._closing.is_set():
            raise _Retry(reason="stopped", message="not sent: the run was stopping")
        with self._lock:
            self._stats["requests"] += 1
        extension, mime = self.audio_format, AUDIO_FORMATS[self.audio_format][1]
        data = {"model": self.model, "response_format": self.response_format}
        data.update({k: str(v) for k, v in (("language", self.language), ("prompt", self.prompt), ("temperature", self.temperature)) if v is not None})
        started = time.perf_counter()
        try:
            response = self._client.post(self.url, data=data, files={"file": (f"audio.{extension}", payload, mime)})
        except httpx.TimeoutException as exc:
            raise self._retry("timeout", f"no answer within timeout_s={self.timeout_s:g} ({type(exc).__name__})", started) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # Dropped connections, resets and bodies cut short (RemoteProtocolError) all land here.
            raise self._retry("connection", f"connection failed: {type(exc).__name__}: {self._scrub(str(exc))}", started) from None
        latency_s = time.perf_counter() - started
        status = response.status_code
        if 200 <= status < 300:
            try:
                return self._parse(response), latency_s
            except ValueError as exc:
                raise self._retry("malformed", f"HTTP {status} with an unreadable body ({exc})", started) from None
        message = self._server_message(response)
        if status in RETRYABLE_STATUSES:
            raise self._retry(str(status), f"HTTP {status} from {self.url}: {message}", started, retry_after_s=parse_retry_after(response.headers.get("retry-after")))
        self._count_reason(str(status))
        if status in FATAL_STATUSES:
            self._closing.set()  # before any queued request of the batch starts
            raise FatalBackendError(
                f"openai backend: HTTP {status} from {self.url} ({FATAL_STATUSES[status]}): {message}. Nothing was recorded for this batch; "
                f"check base_url, model={self.model!r} and the key in ${self.api_key_env}, then run again with --resume."
            )
        raise PermanentError(f"HTTP {status} from {self.url}: {message}", latency_s=latency_s)

    def _parse(self, response: Any) -> str:
        if self.response_format == "text":
            return response.text.strip()
        try:
            body = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise ValueError("JSON without a string 'text' field")
        return body["text"].strip()

    def _server_message(self, response: Any) -> str:
        """The server's own explanation (OpenAI's {"error": {"message": ...}} or the body), scrubbed and shortened."""
        try:
            body = response.json()
            message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("error") or body.get("detail") or body
        except Exception:  # any body at all: HTML error pages, plain text
            message = response.text
        text = " ".join(str(message).split())
        text = self._scrub(text)
        return (text[:SERVER_MESSAGE_CHARS] + "...") if len(text) > SERVER_MESSAGE_CHARS else (text or "(no message)")

    def _scrub(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, REDACTED)
            # Servers echo a refused key in part ("sk-abc...xyz"): hide any long piece of it as well.
            for size in (12, 8):
                if len(self._secret) > size:
                    for start in range(0, len(self._secret) - size + 1):
                        piece = self._secret[start : start + size]
                        if piece in text:
                            text = text.replace(piece, REDACTED)
        return text

    # -- retries, pacing, accounting ---------------------------------------------------------

    def _retry(self, reason: str, message: str, started: float, retry_after_s: float | None = None) -> _Retry:
        self._count_reason(reason)
        return _Retry(reason=reason, message=message, retry_after_s=retry_after_s, latency_s=time.perf_counter() - started)

    def _count_reason(self, reason: str) -> None:
        with self._lock:
            self._stats["by_reason"][reason] = self._stats["by_reason"].get(reason, 0) + 1

    def _take_retry_budget(self) -> bool:
        """Spend one retry if the session's budget allows: a service that is down gets fast failures
        (retryable, resumed later), not every utterance's full backoff."""
        with self._lock:
            if self._stats["retries"] >= 20 + self.retry_budget * self._stats["requests"]:
                return False
            self._stats["retries"] += 1
            return True

    def _wait(self, state: Any) -> float:
        """Full-jitter exponential backoff, but never sooner than the server's Retry-After."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (state.attempt_number - 1))
        wait_s = self._jitter.uniform(0, ceiling)
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _Retry) and error.retry_after_s is not None:
            # A little jitter on top keeps many clients told the same time from returning together.
            wait_s = error.retry_after_s + self._jitter.uniform(0, min(1.0, 0.1 * error.retry_after_s + 0.05))
        return wait_s

    def _sleep(self, seconds: float) -> None:
        self._closing.wait(seconds)  # close() wakes every sleeper at once

    def _pace(self) -> None:
        if self.max_requests_per_s is None:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / self.max_requests_per_s
        if start > now:
            self._closing.wait(start - now)

    def _failed(self, error: TranscriptionError) -> TranscriptionError:
        with self._lock:
            self._stats["failed"][error.kind] += 1
        return error


def encode_audio(samples: np.ndarray, rate_hz: int, audio_format: str = "flac") -> bytes:
    """Mono float audio as 16-bit FLAC or WAV bytes, in memory."""
    buffer = io.BytesIO()
    clipped = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    soundfile.write(buffer, clipped, rate_hz, format=AUDIO_FORMATS[audio_format][0], subtype="PCM_16")
    return buffer.getvalue()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _normalise_base_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BackendError(f"openai backend: base_url={base_url!r} is not an http(s) URL. Give e.g. base_url=https://api.openai.com/v1 or http://127.0.0.1:8000/v1.")
    if parts.username or parts.password:
        raise BackendError("openai backend: base_url holds credentials, which would be stored in run.json. Put the key in an environment variable named by api_key_env.")
    path = parts.path.rstrip("/")
    if path.endswith("/audio/transcriptions"):
        path = path[: -len("/audio/transcriptions")]
    return f"{parts.scheme}://{parts.netloc}{path or '/v1'}"


def _number(name: str, value: Any, *, minimum: float, whole: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < minimum or (whole and number != int(number)):
        kind = "a whole number" if whole else "a number"
        raise BackendError(f"openai backend: {name}={value!r} is not {kind} of at least {minimum:g}.")
    return number


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
