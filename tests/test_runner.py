"""The runner: provenance, failure isolation, and resuming after Ctrl-C or kill -9 without loss or duplicates."""

import json
import re
import shlex
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
from tests.conftest import DEMO_MANIFEST, demo_subset


def rows_in(run_dir):
    try:
        with sqlite3.connect(run_dir / "results.sqlite") as connection:
            return connection.execute("SELECT utterance_id, condition_key FROM results").fetchall()
    except sqlite3.OperationalError:  # the file exists a moment before its table does
        return []


def test_run_records_provenance_and_scores(tmp_path, generated_audio):
    manifest = load_manifest(generated_audio.manifest)
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
    # WAV, FLAC and Ogg at 8-48 kHz, mono and stereo: each decoded whole, whatever its rate and channels.
    for uid, duration_s in frame.set_index("utterance_id")["audio_duration_s"].items():
        lossless = generated_audio.formats[uid][1] != "VORBIS"
        assert duration_s == pytest.approx(generated_audio.durations_s[uid], abs=1e-3 if lossless else 0.05), uid
    assert (frame["ref_words"] == frame["hits"] + frame["substitutions"] + frame["deletions"]).all()


def test_real_speech_through_the_runner_is_recognised(tmp_path):
    """Words only come back if the runner hands the engine the audio intact: decoded, resampled, in order."""
    summary = run_evaluation(load_manifest(demo_subset(tmp_path / "m.jsonl")), load_backend("pocketsphinx"), out_dir=tmp_path / "run", batch_size=4)
    assert (summary.n_written, summary.n_failed) == (8, 0)
    frame = load_run(tmp_path / "run").frame
    for accent in ("us", "scottish"):
        rows = frame[frame["accent"] == accent]
        assert rows["errors"].sum() / rows["ref_words"].sum() < 0.6, accent


def test_bad_audio_fails_only_that_utterance(tmp_path, generated_manifest):
    audio = generated_manifest.parent
    lines = [json.loads(line) for line in generated_manifest.read_text().splitlines()[:3]]
    for line in lines:
        line["audio"] = str(audio / line["audio"])
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file" * 10)
    lines.append({"id": "broken", "audio": str(corrupt), "text": "never heard", "speaker": "x", "tags": {"accent": "us"}})
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = run_evaluation(load_manifest(path), load_backend("pocketsphinx"), out_dir=tmp_path / "run", batch_size=4)
    assert (summary.n_written, summary.n_failed) == (4, 1)
    frame = load_run(tmp_path / "run").frame.set_index("utterance_id")
    assert frame.loc["broken", "status"] == "failed" and "corrupt.wav" in frame.loc["broken", "error"]
    assert (frame.drop(index="broken")["status"] == "ok").all()


def test_existing_run_needs_resume_and_same_configuration(tmp_path, generated_manifest):
    manifest = load_manifest(generated_manifest)
    backend = load_backend("pocketsphinx")
    run_evaluation(manifest, backend, out_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run. Add --resume"):
        run_evaluation(manifest, backend, out_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="field 'seed' differs"):
        run_evaluation(manifest, backend, out_dir=tmp_path / "run", resume=True, seed=1)
    summary = run_evaluation(manifest, backend, out_dir=tmp_path / "run", resume=True)
    assert (summary.n_done_before, summary.n_written) == (12, 0)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, generated_manifest, sig):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "harness.cli", "run", str(generated_manifest), "--backend", "pocketsphinx", "--batch-size", "1", "--out", str(out)]
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
    if sig != signal.SIGKILL:
        # Ctrl-C and SIGTERM (kill, systemd, docker stop) alike: the batch in hand is finished and saved,
        # the run is marked interrupted, and the user is told how to continue.
        stderr = process.stderr.read().decode()
        assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], stderr
        assert f"{sig.name}: stopping after the current batch" in stderr
        assert f"Continue with the same command plus --resume --out {out}" in stderr and "Traceback" not in stderr
        assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = rows_in(out)
    assert len(after) == len(set(after)) == 12
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["sessions"][-1]["written"] == 12 - len(done_before), "finished utterances must not be transcribed again"


def test_a_run_in_use_by_another_process_is_refused(tmp_path, generated_manifest):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="in use by another asrfair process"):
            run_evaluation(load_manifest(generated_manifest), load_backend("replay", {"hypotheses": str(write_empty_hypotheses(tmp_path))}), out_dir=out)
    assert not (out / "run.json").exists()


def write_empty_hypotheses(tmp_path):
    path = tmp_path / "hyps.tsv"
    path.write_text("id\thypothesis\nus_0\tthe cat sat on the mat\n")
    return path


# ------------------------------------------------------------------------------ segments and limits


def tone(path, seconds, freq_hz=220.0, rate_hz=16000):
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate_hz)) / rate_hz
    soundfile.write(str(path), (0.2 * np.sin(2 * np.pi * freq_hz * t)).astype("float32"), rate_hz)
    return path


def test_a_segmented_manifest_feeds_the_backend_only_each_segment(tmp_path):
    import numpy as np

    from harness.audio import load_audio
    from harness.runner import audio_loader

    tone(tmp_path / "long.wav", 6.0)
    manifest_path = tmp_path / "nemo.json"
    manifest_path.write_text("".join(json.dumps({"audio_filepath": "long.wav", "text": "a b", "offset": offset, "duration": 1.5}) + "\n" for offset in (0.0, 2.0, 4.25)))
    whole = load_audio(tmp_path / "long.wav", 16000)
    load = audio_loader(16000)
    for utterance, offset in zip(load_manifest(manifest_path), (0.0, 2.0, 4.25)):
        start = round(offset * 16000)
        np.testing.assert_array_equal(load(utterance), whole[start : start + 24000])


def test_each_segment_is_transcribed_on_its_own(tmp_path):
    """Two sentences in one file, given as two NeMo segments: each is scored against its own words, not the whole file."""
    import numpy as np
    import soundfile

    # Two clips of the committed demo that pocketsphinx hears almost word for word.
    demo = {json.loads(line)["id"]: json.loads(line) for line in DEMO_MANIFEST.read_text().splitlines()}
    first_clip, second_clip = demo["syn-us-slt-v0-s00"], demo["syn-us-rms-v1-s01"]
    first, second = first_clip["text"], second_clip["text"]
    a, rate = soundfile.read(DEMO_MANIFEST.parent / first_clip["audio"], dtype="float32")
    b, _ = soundfile.read(DEMO_MANIFEST.parent / second_clip["audio"], dtype="float32")
    gap = np.zeros(rate, dtype="float32")
    soundfile.write(tmp_path / "both.wav", np.concatenate([a, gap, b]), rate)
    manifest_path = tmp_path / "nemo.json"
    manifest_path.write_text(
        json.dumps({"audio_filepath": "both.wav", "text": first, "offset": 0.0, "duration": len(a) / rate}) + "\n"
        + json.dumps({"audio_filepath": "both.wav", "text": second, "offset": (len(a) + len(gap)) / rate, "duration": len(b) / rate, "id": "second"}) + "\n"
    )
    run_evaluation(load_manifest(manifest_path), load_backend("pocketsphinx", {"processes": "1"}), out_dir=tmp_path / "run", batch_size=2)
    frame = load_run(tmp_path / "run", texts=True).frame.set_index("utterance_id")
    assert frame.loc["second", "audio_duration_s"] == pytest.approx(len(b) / rate, abs=1e-3)
    assert list(frame.index) == ["both@0s", "second"]  # a NeMo segment without an id is named by its file and offset
    for uid, own, others in (("both@0s", first, {"kitchen", "window", "rain"}), ("second", second, {"city", "morning", "seven"})):
        hypothesis = set(frame.loc[uid, "hypothesis"].split())
        assert len(hypothesis & set(re.sub(r"[^a-z ]", "", own.lower()).split())) >= 4, hypothesis  # it heard its own sentence
        assert not hypothesis & others, hypothesis  # and none of the other one


def test_limits_fail_only_the_utterance_that_exceeds_them(tmp_path):
    from harness.runner import DEFAULT_MAX_REFERENCE_WORDS

    tone(tmp_path / "short.wav", 1.0)
    tone(tmp_path / "long.wav", 3.0)
    manifest_path = tmp_path / "m.jsonl"
    manifest_path.write_text("".join(json.dumps(r) + "\n" for r in (
        {"id": "short", "audio": "short.wav", "text": "a b c"},
        {"id": "long", "audio": "long.wav", "text": "a b c"},
        {"id": "wordy", "audio": "short.wav", "text": " ".join(["word"] * 9)},
    )))
    summary = run_evaluation(load_manifest(manifest_path), load_backend("pocketsphinx", {"processes": "1"}), out_dir=tmp_path / "run",
                             max_duration_s=2.0, max_reference_words=8)
    assert (summary.n_written, summary.n_failed) == (3, 2)
    frame = load_run(tmp_path / "run").frame.set_index("utterance_id")
    assert frame.loc["short", "status"] == "ok"
    assert "audio is 3.0 s long, more than the limit of 2 s per utterance" in frame.loc["long", "error"]
    assert "reference has 9 words, more than the limit of 8 per utterance" in frame.loc["wordy", "error"]
    assert DEFAULT_MAX_REFERENCE_WORDS == 20_000


def test_a_huge_reference_fails_quickly_without_aligning(tmp_path):
    from harness.runner import reference_too_long

    text = "word " * 2_000_000  # 10 MB
    started = time.perf_counter()
    reason = reference_too_long(text, 20_000)
    assert "reference has 2000000 words" in reason and time.perf_counter() - started < 5
    assert reference_too_long("a b", 20_000) is None and reference_too_long(text, None) is None


# ------------------------------------------------------------------------------------- full disks


# `asrfair` with units of work and commits as small as one batch, as a slow backend's are: replay
# otherwise takes thousands of rows per unit and commits them in groups, and a failure or a progress
# line could not land between batches of a run this small.
SMALL_UNITS = (
    "import sys, harness.executors as e, harness.store as s\n"
    "e.NO_AUDIO_UNIT_ROWS, s.COMMIT_ROWS = 1, 1\n"
    "from harness.cli import main\n"
    "sys.argv = ['asrfair', *sys.argv[1:]]\n"
    "main()\n"
)


def _replay_inputs(tmp_path, n=3000):
    manifest = tmp_path / "big.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"u{i}", "text": "the quick brown fox jumps over the lazy dog " * 3, "speaker": f"s{i % 50}"}) + "\n" for i in range(n)))
    hyps = tmp_path / "big.tsv"
    hyps.write_text("id\thypothesis\n" + "".join(f"u{i}\tthe quick brown fox jumps over a lazy dog\n" for i in range(n)))
    return [sys.executable, "-c", SMALL_UNITS, "run", str(manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hyps}"]


def _check_resumes_without_loss(command, out, kept):
    resumed = subprocess.run([*command, "--out", str(out), "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = rows_in(out)
    assert len(after) == len(set(after)) == 3000 and set(kept) <= set(after)
    assert json.loads((out / "run.json").read_text())["sessions"][-1]["written"] == 3000 - len(kept)


def test_a_file_size_limit_stops_the_run_and_keeps_finished_batches(tmp_path):
    """The kernel refuses writes past RLIMIT_FSIZE (EFBIG), as a full disk refuses them with ENOSPC."""
    import resource

    command = _replay_inputs(tmp_path)
    out = tmp_path / "run"

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    stopped = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=120, preexec_fn=limited)
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr, stopped.stderr
    kept = rows_in(out)
    assert 0 < len(kept) < 3000
    assert f"The {len(kept)} utterance-conditions finished before are kept" in stopped.stderr
    assert f"continue with the same command plus --resume --out {out}" in stopped.stderr
    _check_resumes_without_loss(command, out, kept)


def test_a_full_disk_stops_the_run_says_so_and_resumes(tmp_path):
    """A real ENOSPC: a 300 kB tmpfs, mounted in a private mount namespace (skipped where that is not allowed)."""
    import shutil as _shutil

    if _shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a private mount namespace here")
    command = _replay_inputs(tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "run"
    script = (
        f"mount -t tmpfs -o size=300k tmpfs {disk} || exit 99\n"
        f"{shlex.join(map(str, command))} --out {out} 2>{tmp_path / 'stderr.txt'}; echo $? > {tmp_path / 'rc.txt'}\n"
        f"cp -r {out} {tmp_path / 'kept'}\n"
    )
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    if result.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    stderr = (tmp_path / "stderr.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() == "2" and "Traceback" not in stderr, stderr
    kept_dir = tmp_path / "kept"  # the folder with its write-ahead log, copied after the process ended
    kept = rows_in(kept_dir)
    assert 0 < len(kept) < 3000
    assert "no space left on the device" in stderr and f"The {len(kept)} utterance-conditions finished so far are kept" in stderr
    assert "free some space (or move the folder to a larger disk), then continue with the same command plus --resume" in stderr
    # moved to a larger disk, as the message suggests, it resumes without loss
    _check_resumes_without_loss(command, kept_dir, kept)


def test_an_out_folder_without_write_permission_is_an_error(tmp_path):
    import os
    import shutil

    command = _replay_inputs(tmp_path, n=10)
    if os.geteuid() == 0:
        # root ignores permission bits; without CAP_DAC_OVERRIDE it is held to them like any user
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is not installed to drop CAP_DAC_OVERRIDE")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = subprocess.run([*command, "--out", str(locked / "run")], capture_output=True, text=True, timeout=60)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot write to {locked / 'run'} (permission denied)" in result.stderr and "Choose an --out folder you can write to" in result.stderr
    assert list(locked.iterdir()) == []


def test_progress_lines_in_a_log(tmp_path):
    """With stderr not a terminal, a line after the first batch and then periodically: rate, ETA, running WER."""
    command = _replay_inputs(tmp_path, n=400)
    result = subprocess.run([*command, "--out", str(tmp_path / "run"), "--batch-size", "50", "--progress-every-s", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 8
    assert lines[0].startswith("progress: 50/400 utterance-conditions (12%), ")
    assert lines[-1].startswith("progress: 400/400 utterance-conditions (100%), ")
    # 27 reference words, 9-word hypothesis with one substitution: 19 errors each, 70.4% pooled
    assert "running WER 70.4% over 10800 reference words; 0 failed" in lines[-1]
    assert all(re.search(r", \d+\.\d\d/s, elapsed \S+, ETA \S+; ", line) for line in lines)


def test_progress_log_rate_and_eta_count_only_this_session():
    from harness.progress import ProgressLog

    now = [0.0]
    lines = []
    log = ProgressLog(lines.append, every_s=10, clock=lambda: now[0])
    now[0] = 5.0
    log.rows([{"status": "ok", "errors": 1, "ref_words": 10}] * 50)
    log.update(150, 1000)  # 100 were done before this session (resume)
    now[0] = 8.0
    log.rows([{"status": "failed"}] * 50)
    log.update(200, 1000)  # within 10 s of the last line: nothing printed
    now[0] = 20.0
    log.rows([{"status": "ok", "errors": 3, "ref_words": 10}] * 100)
    log.update(300, 1000)
    assert lines == [
        "progress: 150/1000 utterance-conditions (15%), 10.00/s, elapsed 5s, ETA 1m25s; running WER 10.0% over 500 reference words; 0 failed",
        "progress: 300/1000 utterance-conditions (30%), 10.00/s, elapsed 20s, ETA 1m10s; running WER 23.3% over 1500 reference words; 50 failed",
    ]
