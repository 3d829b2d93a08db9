"""The Ray Data executor on a real local Ray instance: the same rows as the threads executor, resume,
a transcription actor killed mid-run, and a driver killed mid-run."""

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from harness.backends import BackendFactory  # noqa: E402
from harness.manifest import load_manifest  # noqa: E402
from harness.noise import load_profile  # noqa: E402
from harness.runner import build_conditions, run_evaluation  # noqa: E402
from harness.store import RESULTS_FILE, ResultStore  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def rows_of(run_dir):
    table = ResultStore(run_dir / RESULTS_FILE, readonly=True).read_table()
    return sorted(table.to_pylist(), key=lambda row: (row["utterance_id"], row["condition_key"]))


def replay_files(tmp_path, n=500):
    manifest = tmp_path / "m.jsonl"
    hyps = tmp_path / "h.tsv"
    manifest.write_text("".join(json.dumps({"id": f"u{i:04d}", "text": f"Number {i}, said twice.", "speaker": f"s{i % 25}", "tags": {"accent": ["us", "in"][i % 2]}}) + "\n" for i in range(n)), encoding="utf-8")
    hyps.write_text("id\thypothesis\n" + "".join(f"u{i:04d}\tnumber {i} said {'twice' if i % 3 else 'thrice'}\n" for i in range(n) if i % 17), encoding="utf-8")
    return manifest, hyps


def test_ray_gives_the_rows_of_a_local_run_and_resumes_one(local_ray, tmp_path):
    manifest_path, hyps = replay_files(tmp_path)
    manifest = load_manifest(manifest_path, require_audio=False)
    factory = BackendFactory(name="replay", options={"hypotheses": str(hyps)})
    run_evaluation(manifest, factory, out_dir=tmp_path / "local", batch_size=8)
    expected = rows_of(tmp_path / "local")
    assert len(expected) == 500 and sum(row["error"] is not None for row in expected) == 30  # the missing hypotheses are noted

    summary = run_evaluation(manifest, factory, out_dir=tmp_path / "ray", batch_size=8, executor="ray", prep_workers=2)
    assert (summary.n_written, summary.stopped_early) == (500, False)
    assert rows_of(tmp_path / "ray") == expected

    # Stop a local run after its first unit, then finish it on Ray: only the rest is done.
    import harness.executors as executors

    unit_rows, executors.NO_AUDIO_UNIT_ROWS = executors.NO_AUDIO_UNIT_ROWS, 100
    try:
        first = run_evaluation(manifest, factory, out_dir=tmp_path / "resumed", batch_size=8, stop_requested=lambda: True)
    finally:
        executors.NO_AUDIO_UNIT_ROWS = unit_rows
    assert first.n_written == 100
    second = run_evaluation(manifest, factory, out_dir=tmp_path / "resumed", batch_size=8, executor="ray", resume=True)
    assert (second.n_done_before, second.n_written) == (100, 400)
    assert rows_of(tmp_path / "resumed") == expected
    record = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert [s["executor"] for s in record["sessions"]] == ["threads", "ray"] and record["status"] == "complete"


def committed(run_dir):
    try:
        return ResultStore(run_dir / RESULTS_FILE, readonly=True).count()
    except Exception:  # not created yet, or its tables not yet
        return 0


def transcriber_pids():
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"]) if any("Transcriber" in part for part in (p.info["cmdline"] or []))]


def test_pocketsphinx_under_noise_on_ray_matches_local_even_when_an_actor_is_killed(local_ray, tmp_path, generated_manifest):
    # Three utterances of each voice, clean and in white noise: twelve decodes.
    lines = generated_manifest.read_text().splitlines()
    subset = tmp_path / "m.jsonl"
    subset.write_text("\n".join(lines[:3] + lines[6:9]) + "\n")
    (tmp_path / "audio").symlink_to(generated_manifest.parent / "audio")
    manifest = load_manifest(subset)
    conditions = build_conditions([load_profile("white")], [5.0])
    factory = BackendFactory(name="pocketsphinx", options={"processes": "1"})
    run_evaluation(manifest, factory, out_dir=tmp_path / "local", batch_size=1, conditions=conditions, seed=3)
    expected = rows_of(tmp_path / "local")
    assert len(expected) == 12 and all(row["status"] == "ok" for row in expected)
    assert len({row["noise_json"] for row in expected if row["condition_key"] != "clean"}) == 6  # every utterance its own noise

    result, killed = {}, []

    def run():
        # Two actors on two CPUs: the pipeline must still find a CPU for preparing audio.
        result["summary"] = run_evaluation(manifest, factory, out_dir=tmp_path / "ray", batch_size=1, conditions=conditions, seed=3, executor="ray", prep_workers=2)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while not killed and time.monotonic() < deadline and thread.is_alive():
        pids = transcriber_pids()
        if pids:
            time.sleep(1.0)  # let it start on a batch, then kill it mid-run
            import os

            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        time.sleep(0.1)
    thread.join(timeout=300)
    assert killed, "the transcription actor should have been killed mid-run"
    assert result["summary"].n_written == 12 and not result["summary"].stopped_early
    assert rows_of(tmp_path / "ray") == expected


def test_a_killed_driver_resumes_like_a_local_run(tmp_path):
    manifest_path, hyps = replay_files(tmp_path, n=3000)
    out = tmp_path / "run"
    command = [sys.executable, "-c", (
        "import sys, harness.executors as e, harness.store as s\n"
        "e.NO_AUDIO_UNIT_ROWS, s.COMMIT_ROWS, s.COMMIT_INTERVAL_S = 50, 50, 0.01\n"
        "from harness.cli import app\n"
        "sys.argv = ['asrfair', *sys.argv[1:]]\n"
        "app()\n"
    ), "run", str(manifest_path), "--backend", "replay", "--backend-arg", f"hypotheses={hyps}", "--batch-size", "10", "--out", str(out), "--executor", "ray", "--workers", "1"]
    import psutil

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if committed(out) >= 200:
            break
        time.sleep(0.05)
    ray_processes = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    gone, alive = psutil.wait_procs(ray_processes, timeout=20)
    # The cluster's core (GCS, raylet, workers) ends with the driver that started it; Ray's two
    # agent processes can outlive it (`ray stop` removes them), so the test removes them itself.
    assert not [p for p in alive if p.name() in ("raylet", "gcs_server")]
    for leftover in alive:
        leftover.kill()
    done = ResultStore(out / RESULTS_FILE, readonly=True).count()
    assert 200 <= done < 3000, "the driver should have been killed part-way"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["sessions"][-1]["written"] == 3000 - done
    local = tmp_path / "local"
    run_evaluation(load_manifest(manifest_path, require_audio=False), BackendFactory(name="replay", options={"hypotheses": str(hyps)}), out_dir=local, batch_size=10)
    assert rows_of(out) == rows_of(local)


def test_transcription_actors_never_hold_every_cpu():
    from harness.executors.ray import actor_cpus

    assert actor_cpus(2, 2) == 0.5 and actor_cpus(2, 1) == 1.0 and actor_cpus(64, 8) == 1.0
    for cpus in (1, 2, 3, 4, 16):
        for workers in (1, 2, 3, 8):
            assert workers * actor_cpus(cpus, workers) <= max(cpus - 1, 0.25 * workers)


def test_preparation_stays_in_its_own_tasks(local_ray, tmp_path, generated_manifest):
    """Ray Data must not fuse decoding into the transcription actors (it fuses stages whose resources match)."""
    import ray.data

    from harness.executors import Job
    from harness.executors.ray import RayExecutor
    from harness.pipeline import WorkSpec

    manifest = load_manifest(generated_manifest)
    executor = RayExecutor(workers=2)
    info = executor.open(BackendFactory(name="pocketsphinx", options={"processes": "1"}), [])
    spec = WorkSpec(conditions=tuple(build_conditions([], [])), normalizer="basic", seed=0, sample_rate_hz=info.sample_rate_hz, batch_size=4, tag_names=())
    import numpy as np

    job = Job(manifest=manifest.table, rows=np.arange(2), condition_indices=np.zeros(2, dtype=np.int32), spec=spec, candidates=None)
    seen = []
    original = ray.data.Dataset.iter_batches

    def spy(self, *args, **kwargs):
        seen.append(self)
        return original(self, *args, **kwargs)

    ray.data.Dataset.iter_batches = spy
    try:
        assert sum(t.num_rows for t in executor.run(job)) == 2
    finally:
        ray.data.Dataset.iter_batches = original
    stats = seen[0].stats()
    assert "MapBatches(prepare_batch)->MapBatches(Transcriber)" not in stats and "MapBatches(prepare_batch)" in stats
