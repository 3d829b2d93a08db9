"""The auditor's path through the command line: `asrfair serve` and `asrfair run --backend openai` as
separate processes, kill -9 and --resume, and an API key that no artifact of the run ever contains."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("httpx")

from typer.testing import CliRunner  # noqa: E402

from harness.cli import app  # noqa: E402
from harness.manifest import load_manifest  # noqa: E402
from harness.report.data import load_run  # noqa: E402
from harness.serve import ServeOptions, create_app, serve_in_thread  # noqa: E402
from tests.servers import Faults, demo_manifest, refusing_app, upload_sha256  # noqa: E402

ASRFAIR = [sys.executable, "-m", "harness.cli"]


def _all_text(paths: list[Path], *outputs: str) -> list[tuple[str, bytes]]:
    found = [(str(path), path.read_bytes()) for path in paths if path.is_file()]
    return found + [(f"output {i}", text.encode()) for i, text in enumerate(outputs)]


def test_api_key_appears_in_no_artifact(tmp_path, monkeypatch):
    key = "sk-test-" + secrets.token_hex(24)
    monkeypatch.setenv("ASRFAIR_TEST_KEY", key)
    manifest = demo_manifest(tmp_path, 4)
    shas = [upload_sha256(u.audio) for u in load_manifest(manifest)]
    faults = Faults()
    faults.reset({shas[0]: ["echo-key-400*"]})  # a refusal that quotes the Authorization header back
    from harness.backends import load_backend

    backend = load_backend("pocketsphinx", {"processes": "1"})
    application = create_app(backend, ServeOptions(model_name="pocketsphinx", api_key=key), middlewares=[faults.middleware])
    out = tmp_path / "run"
    runner = CliRunner()
    with serve_in_thread(application) as url:
        result = runner.invoke(app, ["run", str(manifest), "--backend", "openai", "--backend-arg", f"base_url={url}", "--backend-arg", "model=pocketsphinx",
                                     "--backend-arg", "api_key_env=ASRFAIR_TEST_KEY", "--out", str(out), "--by", "accent"])
    backend.close()
    assert result.exit_code == 0, result.output
    report = runner.invoke(app, ["report", str(out), "--by", "accent", "--format", "md,html,csv,json", "--min-speakers", "1", "--min-words", "1"])
    card = runner.invoke(app, ["card", str(out), "--by", "accent"])
    assert report.exit_code == 0 and card.exit_code == 0

    # The key was used (the server demands it and answered), and the quoting refusal was recorded.
    rows = json.loads((out / "report.json").read_text())["overall"]
    assert rows["n_utterances"] == 3 and rows["n_failed"] == 1
    frame = load_run(out).frame
    (error,) = frame.loc[frame["status"] == "failed", "error"]
    assert "HTTP 400" in error and "Bearer <redacted>" in error
    record = json.loads((out / "run.json").read_text())
    assert record["backend_details"]["api_key_env"] == "ASRFAIR_TEST_KEY" and record["backend_details"]["api_key_set"] is True

    # A refused key that the server quotes back stops the run, and the message hides the key too.
    wrong = "sk-wrong-" + secrets.token_hex(24)
    monkeypatch.setenv("ASRFAIR_TEST_KEY", wrong)
    with serve_in_thread(refusing_app(401, "Incorrect API key provided: {key}")) as url:
        refused = runner.invoke(app, ["run", str(manifest), "--backend", "openai", "--backend-arg", f"base_url={url}", "--backend-arg", "api_key_env=ASRFAIR_TEST_KEY", "--out", str(tmp_path / "refused")])
    assert refused.exit_code == 2 and "HTTP 401" in refused.output and "Incorrect API key provided: <redacted>" in refused.output

    artifacts = _all_text(sorted(out.rglob("*")) + sorted((tmp_path / "refused").rglob("*")), result.output, report.output, card.output, refused.output)
    assert len(artifacts) >= 12
    for name, content in artifacts:
        for secret in (key, wrong):
            assert secret.encode() not in content, f"the API key leaked into {name}"
            assert secret[8:24].encode() not in content, f"part of the API key leaked into {name}"


def _start_server(tmp_path: Path) -> tuple[subprocess.Popen, str, Path]:
    log = tmp_path / "server.log"
    handle = open(log, "w")  # noqa: SIM115 - closed when the test ends the process
    process = subprocess.Popen([*ASRFAIR, "serve", "--port", "0", "--backend-arg", "processes=1"], stdout=subprocess.PIPE, stderr=handle, text=True)
    line = process.stdout.readline()
    match = re.search(r"at (http://\S+/v1)", line)
    assert match, f"serve printed {line!r}; log: {log.read_text()}"
    return process, match.group(1), log


def _requested(log: Path) -> list[str]:
    return re.findall(r"POST /v1/audio/transcriptions 200 \S+ audio_sha256=([0-9a-f]{64})", log.read_text())


@pytest.mark.slow
def test_kill_9_then_resume_never_requests_a_finished_utterance(tmp_path):
    manifest = demo_manifest(tmp_path, 8)
    utterances = load_manifest(manifest)
    sha_of = {u.id: upload_sha256(u.audio) for u in utterances}
    server, url, log = _start_server(tmp_path)
    out = tmp_path / "run"
    command = [*ASRFAIR, "run", str(manifest), "--backend", "openai", "--backend-arg", f"base_url={url}", "--backend-arg", "model=pocketsphinx",
               "--backend-arg", "max_concurrency=2", "--batch-size", "2", "--out", str(out)]
    try:
        client = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        done: list[str] = []
        while time.monotonic() < deadline and client.poll() is None:
            try:
                with sqlite3.connect(out / "results.sqlite") as connection:
                    done = [row[0] for row in connection.execute("SELECT utterance_id FROM results WHERE status = 'ok'")]
            except sqlite3.OperationalError:
                done = []
            if len(done) >= 2:
                client.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        client.wait(30)
        assert client.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {client.stderr.read()}"
        with sqlite3.connect(out / "results.sqlite") as connection:
            done = [row[0] for row in connection.execute("SELECT utterance_id FROM results WHERE status = 'ok'")]
        assert 2 <= len(done) < 8
        time.sleep(2)  # let the server finish what the killed client had in flight, so it is logged before the resume
        before = len(_requested(log))

        resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)

    after = _requested(log)[before:]
    assert not {sha_of[i] for i in done} & set(after), "a finished utterance was requested again"
    # Every unfinished utterance was sent (one in flight at the kill may be logged twice: it was not finished).
    assert set(after) == {sha_of[u.id] for u in utterances if u.id not in done}
    with sqlite3.connect(out / "results.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*), COUNT(DISTINCT utterance_id), SUM(status = 'ok') FROM results").fetchone() == (8, 8, 8)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and len(record["sessions"]) == 2
    assert os.path.exists(out / "utterances.parquet")
