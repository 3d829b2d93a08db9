"""The store's rules, each checked against values a wrong store gets wrong: what is committed when,
what a retry replaces, what readers skip, what a duplicate is refused with."""

import json

import pyarrow as pa

from harness.store import RESULTS_FILE, ResultStore, result_schema, rows_to_table

SCHEMA = result_schema(["accent"])


def rows(ids, condition="clean", status="ok", failure=None, errors=1):
    return [{"utterance_id": f"u{i}", "condition_key": condition, "condition": condition, "status": status, "failure": failure, "errors": errors, "ref_words": 4, "speaker": f"s{i}", "tags": {"accent": "us"}} for i in ids]


def test_rows_to_table_fills_tags_and_writes_nested_values_as_json():
    table = rows_to_table([{"utterance_id": "a", "tags": {"accent": "ng"}, "noise_json": [{"seed": 3, "b": "é"}]}, {"utterance_id": "b", "tag.accent": "in"}], SCHEMA)
    assert table.schema.equals(SCHEMA)
    assert table.column("tag.accent").to_pylist() == ["ng", "in"]
    assert table.column("noise_json").to_pylist() == [json.dumps([{"b": "é", "seed": 3}], ensure_ascii=False), None]
    assert table.column("errors").type == pa.int64() and table.column("errors").to_pylist() == [None, None]


def test_a_store_reopened_keeps_its_rows(tmp_path):
    with ResultStore(tmp_path / RESULTS_FILE, schema=SCHEMA) as store:
        store.write_batch(rows(range(3)))
    assert ResultStore(tmp_path / RESULTS_FILE).count() == 3
