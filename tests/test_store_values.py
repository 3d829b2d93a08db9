"""The store's rules, each checked against values a wrong store gets wrong: what is committed when,
what a retry replaces, what readers skip, what compaction merges, what a duplicate is refused with."""

import json
import sqlite3
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import ConfigError, HarnessError
from harness.store import (
    PARTS_DIR,
    RESULTS_FILE,
    ResultStore,
    conform,
    result_schema,
    retryable_mask,
    rows_to_table,
    tag_names_of,
)

SCHEMA = result_schema(["accent"])


def rows(ids, condition="clean", status="ok", failure=None, errors=1):
    return [{"utterance_id": f"u{i}", "condition_key": condition, "condition": condition, "status": status, "failure": failure, "errors": errors, "ref_words": 4, "speaker": f"s{i}", "tags": {"accent": "us"}} for i in ids]


def ledger(path):
    with sqlite3.connect(path) as connection:
        return sorted(connection.execute("SELECT utterance_id, condition_key, status, failure FROM results"))


def parts(tmp_path):
    return sorted(entry.name for entry in (tmp_path / PARTS_DIR).iterdir())


def keyed(table, *names):
    return sorted(zip(*(table.column(name).to_pylist() for name in ("utterance_id", "condition_key", *names))))


# -- tables ------------------------------------------------------------------------------------


def test_rows_to_table_fills_tags_and_writes_nested_values_as_json():
    table = rows_to_table([{"utterance_id": "a", "tags": {"accent": "ng"}, "noise_json": [{"seed": 3, "b": "é"}]}, {"utterance_id": "b", "tag.accent": "in", "tags": {"accent": "no"}}], SCHEMA)
    assert table.schema.equals(SCHEMA)
    assert table.column("tag.accent").to_pylist() == ["ng", "in"]
    assert table.column("noise_json").to_pylist() == [json.dumps([{"b": "é", "seed": 3}], ensure_ascii=False), None]
    assert table.column("noise_json").to_pylist()[0] == '[{"b": "é", "seed": 3}]'
    assert table.column("errors").type == pa.int64() and table.column("errors").to_pylist() == [None, None]
    assert rows_to_table([{"utterance_id": "c", "noise_json": {"z": 1, "a": 2}}], SCHEMA).column("noise_json").to_pylist() == ['{"a": 2, "z": 1}']


def test_conform_orders_casts_and_fills_columns():
    table = pa.table({"errors": pa.array([1, 2], type=pa.int32()), "utterance_id": ["a", "b"], "extra": [1, 2]})
    conformed = conform(table, SCHEMA)
    assert conformed.schema.equals(SCHEMA)
    assert conformed.column("errors").to_pylist() == [1, 2] and conformed.column("utterance_id").to_pylist() == ["a", "b"]
    assert conformed.column("tag.accent").null_count == 2 and conformed.num_rows == 2
    same = rows_to_table(rows([1]), SCHEMA)
    assert conform(same, SCHEMA) is same


def test_retryable_rows_are_failed_and_retryable_only():
    table = pa.table({"status": ["failed", "failed", "ok", "failed", None], "failure": ["retryable", "permanent", "retryable", None, "retryable"]})
    assert retryable_mask(table).to_pylist() == [True, False, False, False, False]
    assert retryable_mask(table, invert=True).to_pylist() == [False, True, True, True, True]


def test_tag_names_come_from_the_tag_columns_in_order():
    assert tag_names_of(result_schema(["b", "a"])) == ["b", "a"] and tag_names_of(result_schema()) == []
    assert result_schema(["b"]).names[-1] == "tag.b" and result_schema(["b"]).field("tag.b").type == pa.string()


# -- committing --------------------------------------------------------------------------------


def test_a_group_is_committed_at_exactly_commit_rows(tmp_path):
    path = tmp_path / RESULTS_FILE
    store = ResultStore(path, schema=SCHEMA, commit_rows=3, commit_interval_s=3600)
    store.write_batch(rows([0, 1]))
    store.append(rows_to_table([], SCHEMA))  # nothing to add
    assert store.count() == 0 and parts(tmp_path) == []
    store.write_batch(rows([2]))
    assert store.count() == 3 and parts(tmp_path) == ["part-00000001.arrow"]
    store.write_batch(rows([3, 4, 5, 6]))
    assert store.count() == 7 and parts(tmp_path) == ["part-00000001.arrow", "part-00000002.arrow"]
    store.flush()
    store.flush()  # nothing buffered: no empty part
    assert parts(tmp_path) == ["part-00000001.arrow", "part-00000002.arrow"]
    store.close()
    with sqlite3.connect(path) as connection:
        assert list(connection.execute("SELECT part, file, n_rows FROM parts ORDER BY part")) == [(1, "part-00000001.arrow", 3), (2, "part-00000002.arrow", 4)]
        assert sorted(connection.execute("SELECT utterance_id, part FROM results")) == [("u0", 1), ("u1", 1), ("u2", 1), ("u3", 2), ("u4", 2), ("u5", 2), ("u6", 2)]


def test_a_group_is_committed_once_the_interval_has_passed(tmp_path):
    store = ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA, commit_rows=1000, commit_interval_s=0.2)
    store.write_batch(rows([0]))
    assert store.count() == 0
    time.sleep(0.25)
    store.append(rows_to_table([], SCHEMA))  # the interval passed with a row waiting: committed
    assert store.count() == 1
    store.write_batch(rows([1]))
    assert store.count() == 1  # the clock restarted at the commit
    store.close()
    assert ResultStore(tmp_path / RESULTS_FILE, readonly=True).count() == 2


def test_the_ledger_holds_each_rows_status_and_failure(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA) as store:
        store.write_batch(rows([0, 1]) + rows([2], status="failed", failure="permanent") + rows([0, 3], condition="pink@5dB", status="failed", failure="retryable") + rows([4], status="failed"))
    assert ledger(path) == [("u0", "clean", "ok", None), ("u0", "pink@5dB", "failed", "retryable"), ("u1", "clean", "ok", None),
                            ("u2", "clean", "failed", "permanent"), ("u3", "pink@5dB", "failed", "retryable"), ("u4", "clean", "failed", None)]
    store = ResultStore(path, readonly=True)
    assert store.failure_counts() == {"failed": 4, "permanent": 1, "retryable": 2, "unclassified": 1}
    assert store.retryable_keys() == {("u0", "pink@5dB"), ("u3", "pink@5dB")}
    assert store.done_keys() == {("u0", "clean"), ("u1", "clean"), ("u2", "clean"), ("u0", "pink@5dB"), ("u3", "pink@5dB"), ("u4", "clean")}
    assert store.done_keys(retry_failed=True) == {("u0", "clean"), ("u1", "clean"), ("u2", "clean"), ("u4", "clean")}


@pytest.mark.parametrize("json_each", [True, False], ids=["json_each", "sqlite-before-3.38"])
def test_both_ways_of_writing_the_ledger_write_the_same_rows(tmp_path, monkeypatch, json_each):
    """SQLite before 3.38 has no ->> operator: keys are then bound row by row. Both must give one ledger
    row per result, with its part, status and failure, refuse a duplicate and replace a retried failure."""
    import harness.store

    monkeypatch.setattr(harness.store, "_JSON_EACH", json_each)
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA, commit_rows=1) as store:
        store.write_batch(rows([0, 1]) + rows([2], status="failed", failure="permanent"))
        store.write_batch(rows([0], condition="pink", status="failed", failure="retryable") + rows([3], status="failed"))
        with pytest.raises(HarnessError, match="u1"):
            store.write_batch(rows([1]))
        store.write_batch(rows([0], condition="pink", errors=2))  # the retry replaces the retryable failure
    with sqlite3.connect(path) as connection:
        assert sorted(connection.execute("SELECT utterance_id, condition_key, status, failure, part FROM results")) == [
            ("u0", "clean", "ok", None, 1), ("u0", "pink", "ok", None, 3), ("u1", "clean", "ok", None, 1),
            ("u2", "clean", "failed", "permanent", 1), ("u3", "clean", "failed", None, 2),
        ]
        assert list(connection.execute("SELECT utterance_id, condition_key, part FROM superseded")) == [("u0", "pink", 2)]


def test_an_empty_store_counts_nothing(tmp_path):
    store = ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA)
    assert store.count() == 0 and store.failure_counts() == {"failed": 0} and store.done_keys() == set() and store.retryable_keys() == set()
    table = store.read_table()
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)
    assert store.read_table(columns=["status"]).column_names == ["status"]
    store.close()


def test_a_duplicate_is_refused_naming_it_and_nothing_of_its_group_is_kept(tmp_path):
    path = tmp_path / RESULTS_FILE
    store = ResultStore(path, schema=SCHEMA, commit_rows=1)
    store.write_batch(rows([0, 1]))
    with pytest.raises(HarnessError) as error:
        store.write_batch(rows([7, 8, 1, 0]))
    assert str(error.value) == f"{path}: row ('u1', 'clean') is already stored. A result is written once; this is a bug in the caller, not in the data."
    with pytest.raises(HarnessError, match=r"row \('u9', 'pink'\) is already stored"):
        store.write_batch(rows([9], condition="pink") + rows([5]) + rows([9], condition="pink"))
    assert store.count() == 2 and parts(tmp_path) == ["part-00000001.arrow"]
    # A permanent failure or a finished row is never replaced by a retry.
    store.write_batch(rows([2], status="failed", failure="permanent"))
    with pytest.raises(HarnessError, match=r"row \('u2', 'clean'\)"):
        store.write_batch(rows([2]))
    store.close()
    assert ledger(path) == [("u0", "clean", "ok", None), ("u1", "clean", "ok", None), ("u2", "clean", "failed", "permanent")]


def test_a_retry_replaces_the_retryable_failure_in_the_same_commit(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA, commit_rows=1) as store:
        store.write_batch(rows([0]) + rows([1, 2], status="failed", failure="retryable", errors=None) + rows([1], condition="pink", status="failed", failure="retryable"))
    # Reopened: the store must find the retryable rows it holds.
    with ResultStore(path, schema=SCHEMA, commit_rows=1) as store:
        store.write_batch(rows([1], errors=5) + rows([3]))
        table = store.read_table()
        assert keyed(table, "status", "errors") == [("u0", "clean", "ok", 1), ("u1", "clean", "ok", 5), ("u1", "pink", "failed", 1), ("u2", "clean", "failed", None), ("u3", "clean", "ok", 1)]
        assert store.count() == 5 and store.retryable_keys() == {("u2", "clean"), ("u1", "pink")}
        # Failed again, retryably: replaced again.
        store.write_batch(rows([2], status="failed", failure="retryable", errors=7))
        assert keyed(store.read_table(), "errors")[3] == ("u2", "clean", 7)
    with sqlite3.connect(path) as connection:
        assert sorted(connection.execute("SELECT utterance_id, condition_key, part FROM superseded")) == [("u1", "clean", 1), ("u2", "clean", 1)]
    assert ledger(path)[1:3] == [("u1", "clean", "ok", None), ("u1", "pink", "failed", "retryable")]


def test_a_new_store_replaces_a_retry_within_its_own_session(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA, commit_rows=1) as store:
        store.write_batch(rows([0], status="failed", failure="retryable"))
    with ResultStore(path, schema=SCHEMA, commit_rows=1) as store:
        store.write_batch(rows([0], errors=3))
        assert store.count() == 1 and keyed(store.read_table(), "status", "errors") == [("u0", "clean", "ok", 3)]


def test_a_retryable_failure_committed_in_this_session_is_replaced_by_its_retry(tmp_path):
    """The store opened with no retryable rows; the first commit brings one: its retry must replace it."""
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA, commit_rows=1) as store:
        store.write_batch(rows([0]) + rows([1], status="failed", failure="retryable"))
        store.write_batch(rows([1], errors=4))
        assert store.count() == 2 and store.retryable_keys() == set()
        assert keyed(store.read_table(), "status", "errors") == [("u0", "clean", "ok", 1), ("u1", "clean", "ok", 4)]
        # A permanent failure is never replaced: writing its key again is a duplicate.
        store.write_batch(rows([2], status="failed", failure="permanent"))
        with pytest.raises(HarnessError):
            store.write_batch(rows([2]))


def test_discarded_rows_are_skipped_by_readers_until_written_again(tmp_path):
    path = tmp_path / RESULTS_FILE
    store = ResultStore(path, schema=SCHEMA, commit_rows=100)
    store.write_batch(rows([0, 1, 2]))
    assert store.discard([("u1", "clean"), ("u1", "clean"), ("u5", "clean")]) == 1  # flushes first, counts what it found
    assert store.count() == 2 and keyed(store.read_table()) == [("u0", "clean"), ("u2", "clean")]
    assert store.read_table(columns=["status"]).num_rows == 2
    store.write_batch(rows([1], errors=9))
    assert keyed(store.read_table(), "errors") == [("u0", "clean", 1), ("u1", "clean", 9), ("u2", "clean", 1)]
    store.close()


# -- compaction --------------------------------------------------------------------------------


def test_compaction_merges_parts_and_drops_superseded_rows(tmp_path):
    path = tmp_path / RESULTS_FILE
    store = ResultStore(path, schema=SCHEMA, commit_rows=1)
    for i in range(4):
        store.write_batch(rows([i]))
    store.discard([("u1", "clean")])
    store.compact()
    assert parts(tmp_path) == ["part-00000005.arrow"]
    assert keyed(store.read_table()) == [("u0", "clean"), ("u2", "clean"), ("u3", "clean")]
    with sqlite3.connect(path) as connection:
        assert list(connection.execute("SELECT part, n_rows FROM parts")) == [(5, 3)]
        assert set(connection.execute("SELECT part FROM results")) == {(5,)} and list(connection.execute("SELECT * FROM superseded")) == []
    store.write_batch(rows([1]))
    assert parts(tmp_path) == ["part-00000005.arrow", "part-00000006.arrow"]
    store.close()


def test_one_part_is_rewritten_only_to_drop_superseded_rows(tmp_path):
    store = ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA, commit_rows=100)
    store.write_batch(rows([0, 1]))
    store.compact()
    assert parts(tmp_path) == ["part-00000001.arrow"]  # nothing to merge, nothing to drop
    store.discard([("u0", "clean")])
    store.compact()
    assert parts(tmp_path) == ["part-00000002.arrow"] and keyed(store.read_table()) == [("u1", "clean")]
    store.close()


def test_the_smallest_parts_are_merged(tmp_path):
    path = tmp_path / RESULTS_FILE
    store = ResultStore(path, schema=SCHEMA, commit_rows=1, max_parts=1000)
    for ids in ([0, 1, 2], [3], [4, 5], [6], [7, 8, 9, 10]):
        store.write_batch(rows(ids))
    store.compact(smallest=2)  # parts 2 and 4, one row each
    with sqlite3.connect(path) as connection:
        assert list(connection.execute("SELECT part, n_rows FROM parts ORDER BY part")) == [(1, 3), (3, 2), (5, 4), (6, 2)]
        assert sorted(connection.execute("SELECT utterance_id FROM results WHERE part = 6")) == [("u3",), ("u6",)]
    store.compact(smallest=1)  # at least two parts: 3 and 6
    with sqlite3.connect(path) as connection:
        assert list(connection.execute("SELECT part, n_rows FROM parts ORDER BY part")) == [(1, 3), (5, 4), (7, 4)]
    assert store.count() == 11 and len(store.read_table()) == 11
    store.close()


def test_too_many_parts_are_merged_down_to_half_the_limit(tmp_path):
    store = ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA, commit_rows=1, max_parts=4)
    for i in range(4):
        store.write_batch(rows([i]))
    assert len(parts(tmp_path)) == 4
    store.write_batch(rows([4]))  # five parts > 4: the smallest 5 - 4 // 2 = 3 are merged
    assert len(parts(tmp_path)) == 3
    assert keyed(store.read_table()) == [(f"u{i}", "clean") for i in range(5)]
    store.close()


# -- reading -----------------------------------------------------------------------------------


def test_reads_return_the_columns_asked_for_in_commit_order(tmp_path):
    store = ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA, commit_rows=2)
    store.write_batch(rows([5, 3]) + rows([9], status="failed"))
    table = store.read_table(columns=["status", "utterance_id"])
    assert table.column_names == ["status", "utterance_id"] and table.column("utterance_id").to_pylist() == ["u5", "u3", "u9"]
    assert store.read_table(columns=["errors", "no such column"]).column_names == ["errors"]
    whole = store.read_table()
    assert whole.schema.equals(SCHEMA) and whole.column("status").to_pylist() == ["ok", "ok", "failed"]
    assert store.to_frame()["utterance_id"].tolist() == ["u5", "u3", "u9"]
    store.close()


def test_a_part_without_a_newer_column_reads_as_nulls(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=result_schema(), commit_rows=1) as store:
        store.write_batch(rows([0]))
    with ResultStore(path, schema=SCHEMA, commit_rows=1) as store:
        assert store.schema.names == [*result_schema().names, "tag.accent"]
        store.write_batch(rows([1]))
        table = store.read_table(columns=["utterance_id", "tag.accent"])
        assert table.column("tag.accent").to_pylist() == [None, "us"]
    reopened = ResultStore(path, readonly=True)
    assert reopened.schema.equals(SCHEMA) and tag_names_of(reopened.schema) == ["accent"]


def test_a_parquet_part_is_read_by_its_columns(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA, commit_rows=1) as store:
        store.write_batch(rows([0]))
    # A part written as Parquet (by hand, or by an older version) and listed in the ledger.
    pq.write_table(rows_to_table(rows([1]), SCHEMA).drop_columns(["tag.accent"]), tmp_path / PARTS_DIR / "part-00000002.parquet")
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO parts VALUES (2, 'part-00000002.parquet', 1)")
        connection.execute("INSERT INTO results VALUES ('u1', 'clean', 'ok', NULL, 2)")
    store = ResultStore(path, readonly=True)
    assert store.read_table(columns=["utterance_id", "tag.accent"]).to_pylist() == [{"utterance_id": "u0", "tag.accent": "us"}, {"utterance_id": "u1", "tag.accent": None}]
    assert store.read_table().column("errors").to_pylist() == [1, 1]


def test_the_ledger_decides_which_rows_exist(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA) as store:
        store.write_batch(rows([0, 1, 2]))
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM results WHERE utterance_id = 'u1'")
    store = ResultStore(path, readonly=True)
    assert keyed(store.read_table()) == [("u0", "clean"), ("u2", "clean")]
    assert store.read_table(columns=["status"]).column_names == ["status"] and store.read_table(columns=["status"]).num_rows == 2


def test_the_export_holds_every_current_row_once(tmp_path):
    with ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA, commit_rows=2) as store:
        store.write_batch(rows([0, 1]) + rows([2], status="failed", failure="retryable"))
    # Resumed: the retry replaces the retryable failure.
    store = ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA, commit_rows=2)
    store.write_batch(rows([2], errors=4))
    exported = pq.read_table(store.export(tmp_path / "out.parquet"))
    assert exported.schema.equals(SCHEMA)
    assert keyed(exported, "status", "errors") == [("u0", "clean", "ok", 1), ("u1", "clean", "ok", 1), ("u2", "clean", "ok", 4)]
    assert not (tmp_path / "out.parquet.tmp").exists()
    store.close()


def test_a_readonly_store_needs_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such result store"):
        ResultStore(tmp_path / RESULTS_FILE, readonly=True)
    assert not (tmp_path / RESULTS_FILE).exists()


def test_a_reopened_store_keeps_its_schema_and_rows(tmp_path):
    path = tmp_path / RESULTS_FILE
    schema = result_schema(["b", "a"])
    with ResultStore(path, schema=schema) as store:
        store.write_batch(rows([0, 1]))
    reopened = ResultStore(path)
    assert reopened.schema.equals(schema) and reopened.count() == 2 and reopened.legacy is False
    reopened.close()
    plain = ResultStore(tmp_path / "other" / RESULTS_FILE)
    assert plain.schema.equals(result_schema()) and plain.legacy is False
    plain.close()


def test_discarding_goes_on_past_keys_it_does_not_hold(tmp_path):
    store = ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA)
    store.write_batch(rows([0, 1, 2]))
    assert store.discard([("u9", "clean"), ("u0", "pink"), ("u2", "clean"), ("u0", "clean")]) == 2
    assert keyed(store.read_table()) == [("u1", "clean")]
    store.close()


def test_a_ledger_emptied_by_hand_lists_no_rows(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA) as store:
        store.write_batch(rows([0, 1]))
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM results")
    table = ResultStore(path, readonly=True).read_table()
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)


def test_an_old_store_is_read_only_through_its_own_reader(tmp_path):
    with sqlite3.connect(tmp_path / RESULTS_FILE) as connection:
        connection.execute("CREATE TABLE results (utterance_id TEXT, condition_key TEXT, tags_json TEXT)")
    store = ResultStore(tmp_path / RESULTS_FILE, readonly=True)
    assert store.legacy
    with pytest.raises(ConfigError) as error:
        store.read_table()
    assert str(error.value) == f"{tmp_path / RESULTS_FILE} was written by an older asrfair (one SQLite row per result). Reports still read it; to continue the run, start a new --out directory."


def test_a_part_that_stays_missing_is_an_error_after_retries(tmp_path):
    with ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA) as store:
        store.write_batch(rows([0]))
    (tmp_path / PARTS_DIR / "part-00000001.arrow").unlink()
    started = time.monotonic()
    with pytest.raises(FileNotFoundError):
        ResultStore(tmp_path / RESULTS_FILE, readonly=True).read_table()
    assert 0.15 <= time.monotonic() - started < 3  # four pauses of 0.05 s for a compacting writer, then the error


def test_an_old_store_is_refused_for_writing_naming_it(tmp_path):
    with sqlite3.connect(tmp_path / RESULTS_FILE) as connection:
        connection.execute("CREATE TABLE results (utterance_id TEXT, condition_key TEXT, tags_json TEXT)")
    with pytest.raises(ConfigError) as error:
        ResultStore(tmp_path / RESULTS_FILE)
    assert str(error.value).startswith(f"{tmp_path / RESULTS_FILE} was written by an older asrfair (one SQLite row per result).")


def test_a_store_in_a_new_nested_folder_and_a_reader_with_its_own_schema(tmp_path):
    path = tmp_path / "a" / "b" / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA) as store:
        store.write_batch(rows([0]))
    narrow = ResultStore(path, readonly=True, schema=result_schema())
    assert narrow.schema.equals(result_schema()) and "tag.accent" not in narrow.read_table().column_names
    assert "tag.accent" in ResultStore(path, readonly=True).read_table().column_names


def test_a_writer_reopened_with_fewer_columns_keeps_the_stored_ones(tmp_path):
    path = tmp_path / RESULTS_FILE
    with ResultStore(path, schema=SCHEMA) as store:
        store.write_batch(rows([0]))
    with ResultStore(path, schema=result_schema()) as store:
        assert store.schema.equals(SCHEMA)
        store.write_batch(rows([1]))
        assert store.read_table(columns=["tag.accent"]).column("tag.accent").to_pylist() == ["us", "us"]
