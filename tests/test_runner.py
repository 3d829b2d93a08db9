"""The runner: provenance, failure isolation, and resuming after Ctrl-C or kill -9 without loss or duplicates."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from harness.backends import load_backend
from harness.errors import ConfigError
from harness.manifest import load_manifest
from harness.report.data import load_run
from harness.runner import run_evaluation


def rows_in(run_dir):
    try:
        with sqlite3.connect(run_dir / "results.sqlite") as connection:
            return connection.execute("SELECT utterance_id, condition_key FROM results").fetchall()
    except sqlite3.OperationalError:  # the file exists a moment before its table does
        return []


def test_run_records_provenance_and_scores(tmp_path, speech_manifest):
    manifest = load_manifest(speech_manifest)
    summary = run_evaluation(manifest, load_backend("pocketsphinx"), out_dir=tmp_path / "run", normalizer="basic", seed=7, batch_size=4)
    assert (summary.n_total, summary.n_written, summary.n_failed) == (12, 12, 0)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "complete" and record["seed"] == 7
    assert record["manifest"]["sha256"] == manifest.sha256
    assert record["normalizer"]["name"] == "basic" and record["backend"]["name"] == "pocketsphinx"
    assert record["environment"]["packages"]["jiwer"] and record["environment"]["python"]
    assert record["sessions"][0]["started_at"] and record["sessions"][0]["ended_at"]
    frame = load_run(tmp_path / "run").frame
    assert len(frame) == 12 and set(frame["accent"]) == {"us", "scottish"}
    assert (tmp_path / "run" / "utterances.parquet").exists()
    # Real speech, real engine: most words of the clean US voice come back.
    us = frame[frame["accent"] == "us"]
    assert us["errors"].sum() / us["ref_words"].sum() < 0.6


def test_bad_audio_fails_only_that_utterance(tmp_path, speech_manifest):
    lines = speech_manifest.read_text().splitlines()[:3]
    corrupt = speech_manifest.parent / "audio" / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file" * 10)
    lines.append(json.dumps({"id": "broken", "audio": "audio/corrupt.wav", "text": "never heard", "speaker": "x", "tags": {"accent": "us"}}))
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "audio").symlink_to(speech_manifest.parent / "audio")
    summary = run_evaluation(load_manifest(path), load_backend("pocketsphinx"), out_dir=tmp_path / "run", batch_size=4)
    assert (summary.n_written, summary.n_failed) == (4, 1)
    frame = load_run(tmp_path / "run").frame.set_index("utterance_id")
    assert frame.loc["broken", "status"] == "failed" and "corrupt.wav" in frame.loc["broken", "error"]
    assert (frame.drop(index="broken")["status"] == "ok").all()


def test_existing_run_needs_resume_and_same_configuration(tmp_path, speech_manifest):
    manifest = load_manifest(speech_manifest)
    backend = load_backend("pocketsphinx")
    run_evaluation(manifest, backend, out_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run. Add --resume"):
        run_evaluation(manifest, backend, out_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="field 'seed' differs"):
        run_evaluation(manifest, backend, out_dir=tmp_path / "run", resume=True, seed=1)
    summary = run_evaluation(manifest, backend, out_dir=tmp_path / "run", resume=True)
    assert (summary.n_done_before, summary.n_written) == (12, 0)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, speech_manifest, sig):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "harness.cli", "run", str(speech_manifest), "--backend", "pocketsphinx", "--batch-size", "1", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "results.sqlite").exists() and len(rows_in(out)) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(sig)
    process.wait(timeout=30)
    done_before = rows_in(out)
    assert 3 <= len(done_before) < 12, "the run should have been interrupted part-way"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = rows_in(out)
    assert len(after) == len(set(after)) == 12
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["sessions"][-1]["written"] == 12 - len(done_before), "finished utterances must not be transcribed again"


def test_a_run_in_use_by_another_process_is_refused(tmp_path, speech_manifest):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="in use by another asrfair process"):
            run_evaluation(load_manifest(speech_manifest), load_backend("replay", {"hypotheses": str(write_empty_hypotheses(tmp_path))}), out_dir=out)
    assert not (out / "run.json").exists()


def write_empty_hypotheses(tmp_path):
    path = tmp_path / "hyps.tsv"
    path.write_text("id\thypothesis\nslt_0\tthe cat sat on the mat\n")
    return path
