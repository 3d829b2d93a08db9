"""A real `asrfair serve` app on 127.0.0.1 with a fault injector in front, and demo manifests for it.

The injector lets the real handler transcribe, then replaces the answer by a fault chosen per
utterance (by the sha256 of the uploaded audio) and per attempt, and records every arrival.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from aiohttp import web

from harness.serve import keys as serve_keys

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO = PROJECT_ROOT / "manifests" / "demo"


def demo_manifest(directory: Path, n: int, *, start: int = 0, name: str = "manifest.jsonl") -> Path:
    """The first `n` bundled demo utterances (real synthetic speech), audio paths made absolute."""
    lines = (DEMO / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[start : start + n]
    records = [json.loads(line) for line in lines]
    for record in records:
        record["audio"] = str(DEMO / record["audio"])
    path = directory / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def upload_sha256(audio_path: str | Path, audio_format: str = "flac") -> str:
    """What the openai backend uploads for this file (decoded at 16 kHz, encoded in memory)."""
    import hashlib

    from harness.audio import load_audio
    from harness.backends.openai import encode_audio

    return hashlib.sha256(encode_audio(load_audio(audio_path, 16000), 16000, audio_format)).hexdigest()


class Faults:
    """Per-utterance fault plans: plan[sha256] = faults for attempts 1, 2, ...; the last one repeats
    when it ends with '*' (e.g. "400*" for a permanent refusal)."""

    def __init__(self, timeout_s: float = 1.0):
        self.plan: dict[str, list[str]] = {}
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.statuses: list[tuple[str, str]] = []
        self.timeout_s = timeout_s
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def reset(self, plan: dict[str, list[str]] | None = None) -> None:
        with self._lock:
            self.plan = dict(plan or {})
            self.arrivals.clear()
            self.statuses.clear()
            self.max_in_flight = 0

    def counts(self) -> Counter:
        return Counter({sha: len(times) for sha, times in self.arrivals.items()})

    def _fault_for(self, sha: str, attempt: int) -> str | None:
        plan = self.plan.get(sha) or []
        if attempt < len(plan):
            return plan[attempt].rstrip("*")
        if plan and plan[-1].endswith("*"):
            return plan[-1].rstrip("*")
        return None

    @web.middleware
    async def middleware(self, request, handler):
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await handler(request)
        finally:
            with self._lock:
                self.in_flight -= 1
        sha = request.get(serve_keys().audio_sha256)
        if sha is None:
            return response
        with self._lock:
            attempt = len(self.arrivals[sha])
            self.arrivals[sha].append(time.monotonic())
        fault = self._fault_for(sha, attempt)
        self.statuses.append((sha, fault or "ok"))
        return await self._inject(fault, request, response)

    async def _inject(self, fault, request, response):
        if fault is None:
            return response
        if fault == "429":
            return _json_error(429, "rate limited", {"Retry-After": "1"})
        if fault == "429-date":
            return _json_error(429, "rate limited", {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)})
        if fault == "429-long":
            return _json_error(429, "come back much later", {"Retry-After": "3600"})
        if fault in ("500", "502", "503", "504"):
            return _json_error(int(fault), "overloaded")
        if fault == "slow":
            await asyncio.sleep(self.timeout_s + 0.5)
            return response
        if fault == "delay":
            await asyncio.sleep(0.3)
            return response
        if fault == "drop":
            request.transport.abort()
            return response
        if fault == "malformed":
            return web.Response(body=b'{"text": "unterminated', content_type="application/json")
        if fault == "no-text":
            return web.json_response({"transcript": "wrong field"})
        if fault == "truncated":
            body = response.body if isinstance(response.body, bytes) else b'{"text": "something long enough to cut"}'
            stream = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            stream.content_length = len(body)
            await stream.prepare(request)
            await stream.write(body[: max(1, len(body) // 2)])
            request.transport.close()
            return stream
        if fault == "echo-key-400":
            # Like a careless gateway: the refusal quotes the credentials it was sent.
            return _json_error(400, f"bad request from {request.headers.get('Authorization', '')}")
        if fault == "echo-key-401":
            return _json_error(401, f"Incorrect API key provided: {request.headers.get('Authorization', '').removeprefix('Bearer ')}")
        if fault in ("400", "401", "403", "404", "413", "422"):
            return _json_error(int(fault), f"refused with {fault}")
        raise AssertionError(f"unknown fault {fault!r}")


def _json_error(status: int, message: str, headers: dict[str, str] | None = None):
    return web.json_response({"error": {"message": message, "type": "test_fault", "param": None, "code": None}}, status=status, headers=headers)


def refusing_app(status: int, message: str = "refused", headers: dict[str, str] | None = None, arrivals: list | None = None):
    """A real HTTP server that reads each upload and answers every one with the same error, without
    transcribing: for tests of the client's retry accounting, where decoding would only cost time."""

    async def handler(request):
        await request.read()
        if arrivals is not None:
            arrivals.append(time.monotonic())
        # "{key}" in the message quotes the credentials back, as OpenAI does in part for a refused key.
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return _json_error(status, message.replace("{key}", key), headers)

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", handler)
    return app
