"""The command backend with a real engine behind a script (PocketSphinx over WAV files), run without a shell."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.backends import PermanentError, RetryableError, TranscriptionRequest, load_backend
from harness.errors import BackendError
from harness.manifest import load_manifest
from harness.report.data import load_run
from harness.runner import run_evaluation
from tests.servers import demo_manifest

SCRIPT = Path(__file__).parent / "tools" / "sphinx_cli.py"
PYTHON = sys.executable


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    return demo_manifest(tmp_path_factory.mktemp("command-demo"), 4)


@pytest.fixture(scope="module")
def direct(manifest_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("direct") / "run"
    run_evaluation(load_manifest(manifest_path), load_backend("pocketsphinx", {"processes": "1"}), out_dir=out)
    return load_run(out).frame.set_index("utterance_id")["hypothesis"]


def _run(manifest_path, out_dir, **options):
    summary = run_evaluation(load_manifest(manifest_path), load_backend("command", options), out_dir=out_dir)
    return summary, load_run(out_dir).frame.set_index("utterance_id")


@pytest.mark.parametrize(
    "options",
    [
        {"cmd": f"{PYTHON} {SCRIPT} {{audio}}"},
        {"cmd": f"{PYTHON} {SCRIPT} --json {{audio}}", "max_concurrency": "2"},
        {"cmd": f"{PYTHON} {SCRIPT} {{audios}}", "mode": "batch"},
        {"cmd": f"{PYTHON} {SCRIPT} --json --list {{list}}", "mode": "batch"},
    ],
    ids=["per-utterance", "json-concurrent", "batch-args", "batch-list-json"],
)
def test_transcripts_equal_a_direct_pocketsphinx_run(manifest_path, direct, tmp_path, options):
    summary, rows = _run(manifest_path, tmp_path / "run", **options)
    assert summary.n_failed == 0 and len(rows) == 4
    assert rows["hypothesis"].to_dict() == direct.to_dict()
    assert direct.nunique() == 4, "real transcripts differ per utterance, so order is checked"
    assert (rows["latency_s"] > 0).all() and (rows["attempts"] == 1).all()


def _request(seconds: float = 0.5) -> TranscriptionRequest:
    samples = (0.1 * np.sin(2 * np.pi * 300 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
    return TranscriptionRequest(utterance_id="u", samples=samples, sample_rate_hz=16000)


def test_non_zero_exit_fails_the_utterance_with_the_tail_of_stderr():
    code = "import sys; sys.stderr.write('noise ' * 500 + 'THE REAL REASON'); sys.exit(3)"
    backend = load_backend("command", {"cmd": f"{PYTHON} -c \"{code}\" {{audio}}"})
    result = backend.transcribe([_request()])[0]
    assert isinstance(result, PermanentError)
    assert "exited with status 3" in str(result) and str(result).endswith("THE REAL REASON") and len(str(result)) < 800


def test_a_call_past_the_timeout_is_killed_and_retryable():
    backend = load_backend("command", {"cmd": f"{PYTHON} -c \"import time; time.sleep(60)\" {{audio}}", "timeout_s": "0.5"})
    started = time.monotonic()
    result = backend.transcribe([_request()])[0]
    assert time.monotonic() - started < 10
    assert isinstance(result, RetryableError) and "timeout_s=0.5" in str(result)


def test_no_shell_is_involved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    backend = load_backend("command", {"cmd": "echo {audio}; touch pwned $(touch pwned2)"})
    text = backend.transcribe([_request()])[0].text
    assert text.endswith("; touch pwned $(touch pwned2)")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_wav_is_written_at_the_stated_rate(tmp_path):
    code = "import sys, soundfile; info = soundfile.info(sys.argv[1]); print(info.samplerate, info.subtype, info.frames)"
    backend = load_backend("command", {"cmd": f"{PYTHON} -c \"{code}\" {{audio}}", "sample_rate_hz": "8000"})
    samples = np.zeros(8000, dtype=np.float32)
    assert backend.transcribe([TranscriptionRequest(utterance_id="u", samples=samples, sample_rate_hz=8000)])[0].text == "8000 PCM_16 8000"


def test_json_without_text_fails_that_utterance():
    backend = load_backend("command", {"cmd": f"{PYTHON} -c \"print('{{}}')\" {{audio}}", "output": "json"})
    result = backend.transcribe([_request()])[0]
    assert isinstance(result, PermanentError) and "'text'" in str(result)


def test_batch_output_of_the_wrong_length_fails_the_batch():
    backend = load_backend("command", {"cmd": f"{PYTHON} -c \"print('only one')\" {{audios}}", "mode": "batch"})
    with pytest.raises(BackendError, match="printed 1 transcripts for 2 inputs"):
        backend.transcribe([_request(), _request()])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cmd": "echo hello"}, "no {audio} placeholder"),
        ({"cmd": "echo {audio}", "mode": "batch"}, "needs {audios}"),
        ({"cmd": "no-such-engine-xyz {audio}"}, "not an executable"),
        ({"cmd": "echo 'unclosed {audio}"}, "cannot be split"),
        ({"cmd": "echo {audio}", "timeout_s": "0"}, "timeout_s='0'"),
        ({"cmd": "echo {audio}", "mode": "stream"}, "mode='stream'"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(BackendError, match=message):
        load_backend("command", options)
