"""The openai backend against a real `asrfair serve` (pocketsphinx) on 127.0.0.1, clean and with faults:
every utterance accounted for, transcripts equal to a clean run, failures only where a fault was permanent."""

from __future__ import annotations

import email.utils
import json
import sqlite3
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("httpx")

from harness.backends import FatalBackendError, TranscriptionRequest, load_backend  # noqa: E402
from harness.backends.openai import parse_retry_after  # noqa: E402
from harness.errors import BackendError  # noqa: E402
from harness.manifest import load_manifest  # noqa: E402
from harness.report.data import load_run  # noqa: E402
from harness.runner import run_evaluation  # noqa: E402
from harness.serve import ServeOptions, create_app, serve_in_thread  # noqa: E402
from tests.servers import Faults, demo_manifest, refusing_app, upload_sha256  # noqa: E402

# Generous: requests queue behind each other in the server's one backend thread, and CI machines are
# slow. The timeout itself is tested on its own, with one request at a time.
TIMEOUT_S = 60.0
SHORT_TIMEOUT_S = 3.0
FAST_RETRIES = {"backoff_s": "0.05", "max_backoff_s": "0.2", "timeout_s": str(TIMEOUT_S)}


@pytest.fixture(scope="module")
def faults():
    return Faults(timeout_s=SHORT_TIMEOUT_S)


@pytest.fixture(scope="module")
def server(faults):
    backend = load_backend("pocketsphinx", {"processes": "2"})
    app = create_app(backend, ServeOptions(model_name="pocketsphinx", max_wait_s=0.005), middlewares=[faults.middleware])
    with serve_in_thread(app) as url:
        yield url
    backend.close()


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    return demo_manifest(tmp_path_factory.mktemp("openai-demo"), 8)


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory):
    """The first three of the same utterances: for tests about one behaviour, not about many."""
    return demo_manifest(tmp_path_factory.mktemp("openai-small"), 3)


@pytest.fixture(scope="module")
def shas(manifest_path):
    return [upload_sha256(u.audio) for u in load_manifest(manifest_path)]


def openai(url, **options):
    return load_backend("openai", {"base_url": url, "model": "pocketsphinx", "api_key_env": "ASRFAIR_TEST_NO_KEY", **FAST_RETRIES, **options})


def run(manifest_path, url, out_dir, *, resume=False, retry_failed=True, batch_size=None, **options):
    return run_evaluation(load_manifest(manifest_path), openai(url, **options), out_dir=out_dir, resume=resume, retry_failed=retry_failed, batch_size=batch_size)


def frame(out_dir):
    return load_run(out_dir).frame.set_index("utterance_id")


@pytest.fixture(scope="module")
def clean_run(server, faults, manifest_path, tmp_path_factory):
    faults.reset()
    out_dir = tmp_path_factory.mktemp("clean") / "run"
    run(manifest_path, server, out_dir)
    return frame(out_dir)


def test_clean_run_through_serve_matches_pocketsphinx_run_directly(clean_run, manifest_path, tmp_path):
    direct = run_evaluation(load_manifest(manifest_path), load_backend("pocketsphinx", {"processes": "1"}), out_dir=tmp_path / "direct")
    assert direct.n_failed == 0
    direct_frame = frame(tmp_path / "direct")
    assert (clean_run["status"] == "ok").all() and len(clean_run) == 8
    assert (clean_run["attempts"] == 1).all() and (clean_run["latency_s"] > 0).all()
    # Real speech: most words come back, and not all transcripts are alike.
    assert clean_run["errors"].sum() / clean_run["ref_words"].sum() < 0.6 and clean_run["hypothesis"].nunique() >= 6
    # FLAC is 16-bit, as pocketsphinx's own input is: the server hears what the local engine hears.
    assert clean_run["hypothesis"].to_dict() == direct_frame["hypothesis"].to_dict()


PLAN = [
    ["429"],  # Retry-After in seconds
    ["429-date", "503"],  # Retry-After as an HTTP date, then overload
    ["500"],  # internal error
    ["drop"],  # connection dropped without an answer
    ["malformed", "truncated"],  # unreadable JSON, then a body cut short
    ["400*"],  # refused for good
    ["422*"],  # refused for good
    [],  # clean
]
EXPECTED_ATTEMPTS = [2, 3, 2, 2, 3, 1, 1, 1]


def test_faults_lose_nothing_and_change_no_transcript(server, faults, manifest_path, shas, clean_run, tmp_path):
    faults.reset({sha: plan for sha, plan in zip(shas, PLAN)})

    summary = run(manifest_path, server, tmp_path / "run", batch_size=8)

    result = frame(tmp_path / "run")
    ids = list(clean_run.index)
    assert summary.n_written == 8 and len(result) == 8 and sorted(result.index) == sorted(ids)
    permanent = {ids[5], ids[6]}
    assert set(result.index[result["status"] == "failed"]) == permanent
    assert (result.loc[list(permanent), "failure"] == "permanent").all()
    assert "refused with 400" in result.loc[ids[5], "error"] and "HTTP 422" in result.loc[ids[6], "error"]
    ok = [i for i in ids if i not in permanent]
    assert result.loc[ok, "hypothesis"].to_dict() == clean_run.loc[ok, "hypothesis"].to_dict()
    assert result.loc[ids, "attempts"].tolist() == EXPECTED_ATTEMPTS
    assert faults.counts() == {sha: n for sha, n in zip(shas, EXPECTED_ATTEMPTS)}

    # Retry-After was honoured: 1 s as seconds, and as a date 2 s ahead (1 s resolution: at least 1 s).
    first = faults.arrivals[shas[0]]
    assert first[1] - first[0] >= 1.0
    second = faults.arrivals[shas[1]]
    assert second[1] - second[0] >= 1.0

    stats = json.loads((tmp_path / "run" / "run.json").read_text())["backend_stats"]
    assert stats["requests"] == sum(EXPECTED_ATTEMPTS) == 15
    assert stats["retries"] == sum(a - 1 for a in EXPECTED_ATTEMPTS) == 7
    assert stats["failed"] == {"retryable": 0, "permanent": 2}
    assert stats["by_reason"] == {"429": 2, "503": 1, "500": 1, "connection": 2, "malformed": 1, "400": 1, "422": 1}
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["failures"] == {"failed": 2, "permanent": 2}


def test_failures_are_counted_per_slice_in_the_report(server, faults, manifest_path, shas, tmp_path):
    from harness.report import ReportOptions, build_report

    faults.reset({shas[0]: ["400*"], shas[1]: ["413*"]})
    run(manifest_path, server, tmp_path / "run")

    report = build_report(tmp_path / "run", ReportOptions(by=("accent",), min_speakers=1, min_words=1, n_resamples=200)).to_json()

    assert report["overall"]["n_failed"] == 2 and report["overall"]["n_utterances"] == 6
    accents = [u.tags["accent"] for u in load_manifest(manifest_path)]
    by_slice = {row["by"]["accent"]: row["n_failed"] for row in report["slices"]}
    assert by_slice == {accent: accents[:2].count(accent) for accent in set(accents)}

    # Latency per slice: percentiles of the successful rows' request times, in JSON and HTML.
    rows = load_run(tmp_path / "run").frame
    ok = rows[rows["status"] == "ok"]
    assert report["overall"]["latency_p50_s"] == pytest.approx(float(ok["latency_s"].median()))
    assert report["overall"]["latency_p90_s"] == pytest.approx(float(ok["latency_s"].quantile(0.9)))
    for row in report["slices"]:
        members = ok[ok["accent"] == row["by"]["accent"]]
        assert row["n_latency"] == len(members) and row["latency_p50_s"] == pytest.approx(float(members["latency_s"].median()))
    from harness.report.html import render_html

    html = render_html(build_report(tmp_path / "run", ReportOptions(by=("accent",), min_speakers=1, min_words=1, n_resamples=200)))
    assert "Latency by slice" in html and f"{report['overall']['latency_p50_s']:.3f} s" in html


def test_resume_retries_only_retryable_failures(server, faults, small_manifest, shas, clean_run, tmp_path):
    # Utterance 0 gets 503 forever: with 2 retries it fails as retryable after 3 attempts.
    faults.reset({shas[0]: ["503*"], shas[1]: ["400*"]})
    first = run(small_manifest, server, tmp_path / "run", max_retries="2")
    assert first.n_failed == 2
    rows = frame(tmp_path / "run")
    assert rows.iloc[0]["failure"] == "retryable" and rows.iloc[0]["attempts"] == 3 and "HTTP 503" in rows.iloc[0]["error"]
    assert rows.iloc[1]["failure"] == "permanent"

    # --no-retry-failed keeps them: nothing is sent.
    faults.reset()
    kept = run(small_manifest, server, tmp_path / "run", resume=True, retry_failed=False, max_retries="2")
    assert kept.n_written == 0 and sum(faults.counts().values()) == 0

    # The default sends the retryable one again, only it, and replaces its row.
    retried = run(small_manifest, server, tmp_path / "run", resume=True, max_retries="2")
    assert (retried.n_written, retried.n_retried, retried.n_failed) == (1, 1, 0)
    assert faults.counts() == {shas[0]: 1}
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*), COUNT(DISTINCT utterance_id) FROM results").fetchone() == (3, 3)
    rows = frame(tmp_path / "run")
    first_id, second_id = clean_run.index[:2]
    assert rows.loc[first_id, "status"] == "ok" and rows.loc[first_id, "hypothesis"] == clean_run.loc[first_id, "hypothesis"]
    assert rows.loc[second_id, "status"] == "failed"
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "complete" and record["backend_stats"]["requests"] == 3 + 1 + 1 + 1


def test_a_slow_answer_is_abandoned_at_the_timeout_and_retried(server, faults, manifest_path, shas, clean_run, tmp_path):
    one = demo_manifest(tmp_path, 1)
    faults.reset({shas[0]: ["slow"]})
    run(one, server, tmp_path / "run", timeout_s=str(SHORT_TIMEOUT_S), max_concurrency="1")
    row = frame(tmp_path / "run").iloc[0]
    assert row["status"] == "ok" and row["attempts"] == 2 and row["hypothesis"] == clean_run.iloc[0]["hypothesis"]
    arrivals = faults.arrivals[shas[0]]
    # Abandoned at the timeout (3 s), not waited for until the slow answer (3.5 s) and beyond; loose for slow machines.
    assert arrivals[1] - arrivals[0] < SHORT_TIMEOUT_S + 2.0
    stats = json.loads((tmp_path / "run" / "run.json").read_text())["backend_stats"]
    assert stats["by_reason"] == {"timeout": 1}


def test_concurrency_is_what_was_asked(server, faults, manifest_path, shas, tmp_path):
    faults.reset({sha: ["delay"] for sha in shas})
    run(demo_manifest(tmp_path, 5), server, tmp_path / "run", max_concurrency="3", batch_size=5)
    assert faults.max_in_flight == 3


def test_requests_per_second_cap(server, faults, manifest_path, shas, tmp_path):
    faults.reset()
    run(demo_manifest(tmp_path, 5), server, tmp_path / "run", max_requests_per_s="4")
    starts = sorted(t for times in faults.arrivals.values() for t in times)
    # 5 requests at 4 per second: at least 4 intervals of 0.25 s between the first and the last start.
    assert len(starts) == 5 and starts[-1] - starts[0] >= 4 * 0.25 - 0.05


def test_retry_after_beyond_the_limit_fails_as_retryable_without_waiting(small_manifest, tmp_path):
    started = time.monotonic()
    with serve_in_thread(refusing_app(429, "come back much later", {"Retry-After": "3600"})) as url:
        run(small_manifest, url, tmp_path / "run", max_retry_after_s="5")
    assert time.monotonic() - started < 30
    row = frame(tmp_path / "run").iloc[0]
    assert row["failure"] == "retryable" and row["attempts"] == 1 and "Retry-After" in row["error"] and "3600" in row["error"]


def test_retry_budget_caps_retries_in_a_session(small_manifest, tmp_path):
    with serve_in_thread(refusing_app(503, "overloaded")) as url:
        summary = run(small_manifest, url, tmp_path / "run", retry_budget="0", max_retries="10")
    stats = json.loads((tmp_path / "run" / "run.json").read_text())["backend_stats"]
    # 3 x 10 retries wanted; the budget allows 20 + 0 x requests.
    assert summary.n_failed == 3 and stats["retries"] == 20 and stats["requests"] == 3 + 20
    assert (frame(tmp_path / "run")["failure"] == "retryable").all()


def test_upload_over_the_limit_fails_without_a_request(server, faults, small_manifest, tmp_path):
    faults.reset()
    summary = run(small_manifest, server, tmp_path / "run", max_upload_mb="0.01")
    assert summary.n_failed == 3 and sum(faults.counts().values()) == 0
    row = frame(tmp_path / "run").iloc[0]
    assert row["failure"] == "permanent" and "upload limit" in row["error"]


def test_server_size_limit_gives_413_and_a_permanent_failure(faults, small_manifest, tmp_path):
    backend = load_backend("pocketsphinx", {"processes": "1"})
    app = create_app(backend, ServeOptions(model_name="pocketsphinx", max_upload_bytes=20_000))
    with serve_in_thread(app) as url:
        run(small_manifest, url, tmp_path / "run")
    rows = frame(tmp_path / "run")
    big = rows[rows["status"] == "failed"]
    assert len(big) >= 1 and big["error"].str.contains("HTTP 413").all() and big["error"].str.contains("larger than this server's limit").all()
    assert (big["failure"] == "permanent").all()


@pytest.mark.parametrize("response_format", ["text", "verbose_json"])
def test_response_formats(server, faults, small_manifest, clean_run, tmp_path, response_format):
    faults.reset()
    run(small_manifest, server, tmp_path / "run", response_format=response_format)
    hypotheses = frame(tmp_path / "run")["hypothesis"]
    assert hypotheses.to_dict() == clean_run.loc[hypotheses.index, "hypothesis"].to_dict()


def test_wav_upload_and_numpy_audio(server, faults):
    """The library path alone, on generated audio: WAV encoding, one result per request, in order."""
    faults.reset()
    rate = 16000
    t = np.arange(rate) / rate
    requests = [
        TranscriptionRequest(utterance_id="tone", samples=(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate_hz=rate),
        TranscriptionRequest(utterance_id="silence", samples=np.zeros(rate, dtype=np.float32), sample_rate_hz=rate),
    ]
    with openai(server, audio_format="wav") as backend:
        results = backend.transcribe(requests)
    assert [type(r).__name__ for r in results] == ["Transcript", "Transcript"]
    assert all(r.attempts == 1 and r.latency_s > 0 for r in results)
    assert len(faults.arrivals) == 2


@pytest.mark.parametrize(("status", "meaning"), [(401, "the API key was refused"), (403, "access was refused"), (404, "the URL or model was not found")])
def test_refused_credentials_stop_the_run_and_record_nothing(small_manifest, tmp_path, status, meaning):
    arrivals: list[float] = []
    with serve_in_thread(refusing_app(status, "no", arrivals=arrivals)) as url, pytest.raises(FatalBackendError, match=f"HTTP {status}.*{meaning}.*--resume"):
        run(small_manifest, url, tmp_path / "run", max_concurrency="1")
    # Not retried, and the other requests of the batch were not sent once the first was refused.
    assert len(arrivals) == 1
    assert len(load_run(tmp_path / "run").frame) == 0


def test_no_garbled_or_wrong_answer_is_ever_scored(server, faults, small_manifest, shas, clean_run, tmp_path):
    faults.reset({shas[0]: ["no-text", "malformed"], shas[1]: ["500", "502", "504"]})
    run(small_manifest, server, tmp_path / "run")
    rows = frame(tmp_path / "run")
    assert (rows["status"] == "ok").all()
    assert rows["hypothesis"].to_dict() == clean_run.loc[rows.index, "hypothesis"].to_dict()
    assert rows.iloc[0]["attempts"] == 3 and rows.iloc[1]["attempts"] == 4


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("soon", None), (None, None), ("", None), ("nan", None)],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"api_key": "sk-secret"}, "never a --backend-arg"),
        ({"base_url": "ftp://example"}, "not an http"),
        ({"base_url": "http://user:pw@127.0.0.1:9/v1"}, "holds credentials"),
        ({"response_format": "srt"}, "not one of json"),
        ({"max_concurrency": "0"}, "max_concurrency='0'"),
        ({"timeout_s": "soon"}, "timeout_s='soon'"),
        ({"audio_format": "mp3"}, "audio_format='mp3'"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(BackendError, match=message):
        load_backend("openai", {"base_url": "http://127.0.0.1:9", **options})


@pytest.mark.parametrize(
    ("given", "url"),
    [("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"), ("https://api.example.com/v1/", "https://api.example.com/v1"),
     ("http://h:1/openai/v1/audio/transcriptions", "http://h:1/openai/v1")],
)
def test_base_url_normalised(given, url):
    assert load_backend("openai", {"base_url": given}).base_url == url
