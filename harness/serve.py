"""`asrfair serve`: an OpenAI-compatible transcription server in front of any local backend (aiohttp).

`POST /v1/audio/transcriptions` takes a multipart upload as OpenAI's API does and answers
{"text": ...}. Requests arriving together are transcribed together: a batcher gathers up to
`batch_size` of them (waiting at most `max_wait_s` for company) into one backend call, which runs
in one worker thread because backends are not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from harness.audio import load_audio
from harness.backends.base import Backend, FatalBackendError, Transcript, TranscriptionError, TranscriptionRequest
from harness.errors import HarnessError

log = logging.getLogger("asrfair.serve")
RESPONSE_FORMATS = ("json", "text", "verbose_json")
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    model_name: str
    api_key: str | None = None  # required as a Bearer token when set
    max_upload_bytes: int = 25 * 1024 * 1024
    batch_size: int = 16
    max_wait_s: float = 0.01


@dataclass
class _Job:
    request: TranscriptionRequest
    future: asyncio.Future


@functools.cache
def keys() -> Any:
    """aiohttp's typed keys for what the application and a request carry (made on first use: aiohttp is
    the `serve` extra, imported only here). `keys().audio_sha256` is the uploaded audio's hash, which a
    middleware may read from the request after the handler ran."""
    from types import SimpleNamespace

    from aiohttp import web

    return SimpleNamespace(
        backend=web.AppKey("backend", Backend), options=web.AppKey("options", ServeOptions), queue=web.AppKey("queue", asyncio.Queue),
        audio_sha256=web.RequestKey("asrfair.audio_sha256", str),
    )


def create_app(backend: Backend, options: ServeOptions, *, middlewares: Sequence[Any] = ()):
    """The aiohttp application. `middlewares` wrap the handlers (the tests inject faults this way)."""
    from aiohttp import web

    if backend.sample_rate_hz is None:
        raise HarnessError(f"backend {backend.name!r} takes no audio, so it cannot serve transcriptions. Serve an audio backend.")
    app = web.Application(middlewares=list(middlewares), client_max_size=options.max_upload_bytes + 1024 * 1024)
    app[keys().backend], app[keys().options] = backend, options
    app.router.add_post(TRANSCRIPTIONS_PATH, _transcriptions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.cleanup_ctx.append(_batcher)
    return app


async def _batcher(app):
    """Run the backend in one thread, fed by a queue that batches requests arriving together."""
    backend: Backend = app[keys().backend]
    options: ServeOptions = app[keys().options]
    queue: asyncio.Queue[_Job] = asyncio.Queue()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asrfair-serve")
    loop = asyncio.get_running_loop()

    async def run() -> None:
        while True:
            jobs = [await queue.get()]
            deadline = loop.time() + options.max_wait_s
            while len(jobs) < options.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            jobs = [job for job in jobs if not job.future.cancelled()]
            if not jobs:
                continue
            results = await loop.run_in_executor(worker, _transcribe_isolated, backend, [job.request for job in jobs])
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)

    app[keys().queue] = queue
    task = asyncio.create_task(run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    worker.shutdown(wait=True)


def _transcribe_isolated(backend: Backend, requests: list[TranscriptionRequest]) -> list[Any]:
    """One result or exception per request: a batch that fails is retried one request at a time."""
    try:
        results = backend.transcribe(requests)
        if len(results) == len(requests):
            return list(results)
    except FatalBackendError as error:
        return [error] * len(requests)
    except Exception:  # noqa: BLE001 - isolate the request that broke the batch, below
        pass
    isolated: list[Any] = []
    for request in requests:
        try:
            isolated.append(backend.transcribe([request])[0])
        except Exception as error:  # noqa: BLE001 - returned to that request's client as a 500
            isolated.append(error)
    return isolated


def _error(status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None, headers: dict[str, str] | None = None):
    from aiohttp import web

    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": None}}, status=status, headers=headers)


async def _transcriptions(request):
    from aiohttp import web

    app, started = request.app, time.perf_counter()
    options: ServeOptions = app[keys().options]
    backend: Backend = app[keys().backend]
    if options.api_key is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {options.api_key}".encode()):
            return _error(401, "Incorrect API key provided. Send it as 'Authorization: Bearer KEY'.", kind="authentication_error")
    if not request.content_type.startswith("multipart/"):
        return _error(400, f"expected multipart/form-data with a 'file' part, got {request.content_type or 'no content type'}.")
    fields: dict[str, str] = {}
    audio: bytes | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if part.name == "file":
            chunks, size = [], 0
            while chunk := await part.read_chunk(65536):
                size += len(chunk)
                if size > options.max_upload_bytes:
                    return _error(413, f"file is larger than this server's limit of {options.max_upload_bytes / 1024 / 1024:g} MiB.", param="file")
                chunks.append(chunk)
            audio = b"".join(chunks)
        elif part.name:
            fields[part.name] = (await part.text())[:10000]
    if audio is None:
        return _error(400, "no 'file' part in the upload. Send the audio as the multipart field 'file'.", param="file")
    model = fields.get("model", options.model_name)
    if model != options.model_name:
        return _error(404, f"model {model!r} does not exist here; this server serves {options.model_name!r}.", param="model")
    response_format = fields.get("response_format", "json")
    if response_format not in RESPONSE_FORMATS:
        return _error(400, f"response_format {response_format!r} is not supported here; use one of {', '.join(RESPONSE_FORMATS)}.", param="response_format")
    audio_sha256 = hashlib.sha256(audio).hexdigest()
    request[keys().audio_sha256] = audio_sha256
    loop = asyncio.get_running_loop()
    try:
        samples = await loop.run_in_executor(None, load_audio, io.BytesIO(audio), backend.sample_rate_hz)
    except HarnessError as error:
        return _error(400, f"could not decode the audio: {error}", param="file")
    except Exception as error:  # noqa: BLE001 - any decoder failure is the client's file
        return _error(400, f"could not decode the audio: {type(error).__name__}: {error}", param="file")
    job = _Job(TranscriptionRequest(utterance_id=audio_sha256[:16], samples=samples, sample_rate_hz=backend.sample_rate_hz), loop.create_future())
    await app[keys().queue].put(job)
    result = await job.future
    elapsed = time.perf_counter() - started
    if isinstance(result, BaseException):
        status, response = _failure_response(result)
        log.info("POST %s %d %.3fs audio_sha256=%s", TRANSCRIPTIONS_PATH, status, elapsed, audio_sha256)
        return response
    text = result.text if isinstance(result, Transcript) else str(result)
    log.info("POST %s 200 %.3fs audio_sha256=%s", TRANSCRIPTIONS_PATH, elapsed, audio_sha256)
    duration_s = len(samples) / backend.sample_rate_hz
    if response_format == "text":
        return web.Response(text=text, content_type="text/plain")
    if response_format == "verbose_json":
        return web.json_response({"task": "transcribe", "language": fields.get("language"), "duration": duration_s, "text": text,
                                  "segments": [{"id": 0, "start": 0.0, "end": duration_s, "text": text}]})
    return web.json_response({"text": text})


def _failure_response(error: BaseException):
    if isinstance(error, TranscriptionError) and error.retryable:
        return 503, _error(503, f"transcription failed, try again: {error}", kind="server_error", headers={"Retry-After": "1"})
    if isinstance(error, TranscriptionError):
        return 422, _error(422, f"transcription failed: {error}")
    return 500, _error(500, f"the backend failed: {type(error).__name__}: {error}", kind="server_error")


async def _models(request):
    from aiohttp import web

    return web.json_response({"object": "list", "data": [{"id": request.app[keys().options].model_name, "object": "model", "owned_by": "asrfair"}]})


async def _health(request):
    from aiohttp import web

    return web.json_response({"status": "ok", "backend": request.app[keys().backend].name})


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (read it back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HarnessError(f"cannot listen on {host}:{port} ({exc.strerror}). Choose another --port, or --port 0 for any free one.") from exc
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/v1"


def serve_forever(app, sock: socket.socket, *, on_ready=None) -> None:
    """Serve `app` on `sock` until interrupted (Ctrl-C or SIGTERM)."""
    from aiohttp import web

    web.run_app(app, sock=sock, print=on_ready, handle_signals=True, access_log=None)


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` from a background thread; yields the base URL (…/v1). For tests and notebooks."""
    from aiohttp import web

    sock = bind_socket(host, port)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="asrfair-serve-loop", daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield url_of(sock)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        sock.close()
