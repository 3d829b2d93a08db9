"""The result store: grouped commits, no duplicates, superseded rows, and kill -9 at any moment."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from harness import store as store_module
from harness.errors import ConfigError, HarnessError
from harness.store import PARTS_DIR, RESULTS_FILE, ResultStore, result_schema, rows_to_table

SCHEMA = result_schema(["accent"])


def rows(start, stop, condition="clean", status="ok"):
    return [{"utterance_id": f"u{i}", "condition_key": condition, "condition": condition, "status": status, "errors": i % 3, "ref_words": 5, "speaker": f"s{i % 4}", "tags": {"accent": "us" if i % 2 else "in"}} for i in range(start, stop)]


def ledger(path):
    with sqlite3.connect(path) as connection:
        return sorted(connection.execute("SELECT utterance_id, condition_key FROM results"))


def test_rows_are_committed_in_groups_by_count_and_by_time(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA, commit_rows=10, commit_interval_s=3600) as store:
        store.write_batch(rows(0, 6))
        assert store.count() == 0 and ledger(path) == []  # buffered, not yet committed
        store.write_batch(rows(6, 12))
        assert store.count() == 12  # 12 >= 10 rows waiting: one commit of both batches
        assert len(list((tmp_path / PARTS_DIR).iterdir())) == 1
    with ResultStore(path, schema=SCHEMA, commit_rows=10**6, commit_interval_s=0.05) as store:
        store.write_batch(rows(12, 13))
        time.sleep(0.06)
        store.write_batch(rows(13, 14))
        assert store.count() == 14  # the interval passed: committed without reaching the count
        store.write_batch(rows(14, 15))
    assert ResultStore(path, readonly=True).count() == 15  # closing commits the rest


def test_tags_are_columns_and_reads_are_columnar(tmp_path):
    with ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA) as store:
        store.write_batch(rows(0, 4))
    table = ResultStore(tmp_path / RESULTS_FILE, readonly=True).read_table(columns=["utterance_id", "tag.accent"])
    assert table.column_names == ["utterance_id", "tag.accent"]
    assert table.column("tag.accent").to_pylist() == ["in", "us", "in", "us"]
    with sqlite3.connect(tmp_path / RESULTS_FILE) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(results)")]
    assert "tags_json" not in columns and "reference" not in columns  # the ledger holds keys, not results


def test_a_stored_key_is_never_written_twice(tmp_path):
    with ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA, commit_rows=1) as store:
        store.write_batch(rows(0, 3))
        with pytest.raises(HarnessError, match=r"row \('u1', 'clean'\) is already stored"):
            store.write_batch(rows(1, 2))
        with pytest.raises(HarnessError, match=r"row \('u5', 'clean'\) is already stored"):
            store.write_batch(rows(5, 6) + rows(5, 6))
        assert store.count() == 3
    assert len(ResultStore(tmp_path / RESULTS_FILE, readonly=True).read_table()) == 3
    assert len(list((tmp_path / PARTS_DIR).iterdir())) == 1  # the refused parts were removed


def test_discarded_rows_are_redone_and_compaction_drops_the_old_ones(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA, commit_rows=2) as store:
        store.write_batch(rows(0, 2) + rows(2, 4, status="failed"))
        assert store.discard([("u2", "clean"), ("u3", "clean"), ("nope", "clean")]) == 2
        assert sorted(store.done_keys()) == [("u0", "clean"), ("u1", "clean")]
        store.write_batch(rows(2, 4))
        store.flush()
        table = store.read_table()
        assert sorted(zip(table.column("utterance_id").to_pylist(), table.column("status").to_pylist())) == [("u0", "ok"), ("u1", "ok"), ("u2", "ok"), ("u3", "ok")]
        store.compact()
        assert len(list((tmp_path / PARTS_DIR).iterdir())) == 1
        assert store.read_table().num_rows == 4 and store.count() == 4


def test_many_small_parts_are_merged(tmp_path):
    with ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA, commit_rows=1, max_parts=5) as store:
        for i in range(23):
            store.write_batch(rows(i, i + 1))
        assert len(list((tmp_path / PARTS_DIR).iterdir())) <= 5
        assert sorted(store.done_keys()) == sorted((f"u{i}", "clean") for i in range(23))


def test_a_part_no_transaction_lists_is_deleted_unread(tmp_path):
    with ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA) as store:
        store.write_batch(rows(0, 2))
    orphan = tmp_path / PARTS_DIR / "part-00000099.parquet"
    import pyarrow.parquet as pq

    pq.write_table(rows_to_table(rows(5, 6), SCHEMA), orphan)  # as if killed between the part and the ledger
    assert ResultStore(tmp_path / RESULTS_FILE, readonly=True).read_table().num_rows == 2
    ResultStore(tmp_path / RESULTS_FILE).close()
    assert not orphan.exists()


def test_a_store_of_the_old_layout_is_refused_for_writing(tmp_path):
    with sqlite3.connect(tmp_path / RESULTS_FILE) as connection:
        connection.execute("CREATE TABLE results (utterance_id TEXT, condition_key TEXT, tags_json TEXT)")
    with pytest.raises(ConfigError, match="written by an older asrfair"):
        ResultStore(tmp_path / RESULTS_FILE)


def test_wal_and_synchronous_normal(tmp_path):
    store = ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA)
    assert store._connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()


# -- kill -9 at random moments ---------------------------------------------------------------------

N_UTTERANCES = 30000
DRIVER = """
import sys
import harness.executors as executors
import harness.store as store
# Small units and commits and few parts: hundreds of commits and merges for a kill to land in.
executors.NO_AUDIO_UNIT_ROWS, store.COMMIT_ROWS, store.COMMIT_INTERVAL_S, store.MAX_PARTS = 61, 100, 0.005, 6
from harness.backends import BackendFactory
from harness.manifest import load_manifest
from harness.runner import run_evaluation
manifest, hyps, out, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
run_evaluation(load_manifest(manifest, require_audio=False), BackendFactory(name="replay", options={"hypotheses": hyps}), out_dir=out, resume=resume, batch_size=7)
"""


@pytest.fixture
def replay_files(tmp_path):
    manifest = tmp_path / "m.jsonl"
    hyps = tmp_path / "h.tsv"
    manifest.write_text("".join(json.dumps({"id": f"u{i:05d}", "text": f"Say {i} words, then stop.", "speaker": f"s{i % 40}", "tags": {"accent": ["us", "in", "ng"][i % 3]}}) + "\n" for i in range(N_UTTERANCES)), encoding="utf-8")
    hyps.write_text("id\thypothesis\n" + "".join(f"u{i:05d}\tsay {i} word then {'stop' if i % 5 else 'go'}\n" for i in range(0, N_UTTERANCES, 1) if i % 11), encoding="utf-8")
    return manifest, hyps


def sorted_rows(run_dir):
    table = ResultStore(run_dir / RESULTS_FILE, readonly=True).read_table()
    return sorted(table.to_pylist(), key=lambda row: (row["utterance_id"], row["condition_key"]))


def committed(run_dir):
    try:
        with sqlite3.connect(f"file:{run_dir / RESULTS_FILE}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or its tables not yet
        return 0


@pytest.mark.slow
def test_killed_at_random_moments_the_run_resumes_to_the_same_rows_none_lost_or_doubled(tmp_path, replay_files):
    manifest, hyps = replay_files
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, "-c", DRIVER, str(manifest), str(hyps), str(reference), "0"], check=True, timeout=120)
    expected = sorted_rows(reference)
    assert len(expected) == N_UTTERANCES

    out = tmp_path / "killed"
    rng = random.Random(20261130)
    # Kill once past each of these counts of committed rows, a random few milliseconds later, so
    # kills land anywhere in the cycle of writing a part, committing the ledger and merging parts.
    thresholds = sorted(rng.sample(range(1, N_UTTERANCES - 500), 6))
    kills, resume = 0, "0"
    for threshold in [*thresholds, None]:
        process = subprocess.Popen([sys.executable, "-c", DRIVER, str(manifest), str(hyps), str(out), resume], stderr=subprocess.PIPE)
        if threshold is not None:
            deadline = time.monotonic() + 60
            while process.poll() is None and committed(out) < threshold and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.03))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
        process.wait(timeout=120)
        assert process.returncode in (0, -signal.SIGKILL), process.stderr.read().decode()
        resume = "1"
        # After every kill: what the ledger lists is exactly what the parts hold, once each.
        keys = ledger(out / RESULTS_FILE)
        held = [(row["utterance_id"], row["condition_key"]) for row in sorted_rows(out)]
        assert held == keys and len(set(keys)) == len(keys)
        if process.returncode == 0:
            break
    assert kills >= 4, "the run should have been killed part-way several times"
    assert process.returncode == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and sum(session["written"] for session in record["sessions"] if "written" in session) <= N_UTTERANCES
    assert sorted_rows(out) == expected
    export = ResultStore(out / RESULTS_FILE, readonly=True)
    import pyarrow.parquet as pq

    assert pq.read_table(out / "utterances.parquet").num_rows == N_UTTERANCES == export.count()
