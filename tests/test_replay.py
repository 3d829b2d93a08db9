import json

import pytest

from harness.backends import TranscriptionRequest, load_backend
from harness.errors import BackendError


def request(utterance_id):
    return TranscriptionRequest(utterance_id=utterance_id, samples=None, sample_rate_hz=None)


def test_tsv_lookup_and_missing_scored_empty(tmp_path):
    path = tmp_path / "preds.tsv"
    path.write_text("id\thypothesis\nu1\thello world\nu9\tstray\n", encoding="utf-8")
    backend = load_backend("replay", {"hypotheses": str(path)})
    coverage = backend.prepare(["u1", "u2"])
    assert (coverage.n_matched, coverage.n_missing, coverage.missing_examples) == (1, 1, ("u2",))
    assert (coverage.n_unused, coverage.unused_examples) == (1, ("u9",))
    results = backend.transcribe([request("u1"), request("u2")])
    assert [r.text for r in results] == ["hello world", ""]
    assert results[0].note is None and "no hypothesis" in results[1].note
    assert "1 of 2 manifest utterances have no hypothesis" in backend.notes()[0]
    assert backend.describe()["coverage"]["missing"] == 1


def test_stem_matching_and_custom_columns(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps({"path": "clip1.wav", "prediction": "yes"}) + "\n", encoding="utf-8")
    backend = load_backend("replay", {"hypotheses": str(path), "id_column": "path", "hypothesis_column": "prediction", "match": "stem"})
    backend.prepare(["clip1.mp3"])
    assert [r.text for r in backend.transcribe([request("clip1.mp3")])] == ["yes"]


def test_no_match_shows_examples_from_both_files(tmp_path):
    path = tmp_path / "preds.csv"
    path.write_text("id,hypothesis\nx.wav,one\n", encoding="utf-8")
    backend = load_backend("replay", {"hypotheses": str(path)})
    with pytest.raises(BackendError, match=r"none of the 1 manifest ids matches.*\['x.mp3'\].*\['x.wav'\].*match=stem"):
        backend.prepare(["x.mp3"])


def test_bad_column_names_the_header(tmp_path):
    path = tmp_path / "preds.tsv"
    path.write_text("key\ttext\nu1\thi\n", encoding="utf-8")
    with pytest.raises(BackendError, match=r"no column 'id'; the header has \['key', 'text'\]"):
        load_backend("replay", {"hypotheses": str(path)})


def test_duplicate_ids_rejected_with_line(tmp_path):
    path = tmp_path / "preds.tsv"
    path.write_text("id\thypothesis\nu1\ta\nu1\tb\n", encoding="utf-8")
    with pytest.raises(BackendError, match=r"preds.tsv:3: field 'id' value 'u1' repeats line 2"):
        load_backend("replay", {"hypotheses": str(path)})


def test_unknown_backend_suggests():
    with pytest.raises(BackendError, match="Did you mean 'replay'"):
        load_backend("replya")


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from harness.backends.replay import _read_hypotheses, _read_hypotheses_in_bulk  # noqa: E402

cell = st.sampled_from(["u1", "u2", "hello world", "", "a,b", '"quoted"', "x\ty", "naïve"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(cell, cell), max_size=6), suffix=st.sampled_from([".tsv", ".csv", ".jsonl"]), columns=st.sampled_from([("id", "hypothesis"), ("id", "text"), ("key", "hypothesis")]))
def test_bulk_reader_gives_the_line_readers_pairs_or_nothing(tmp_path, rows, suffix, columns):
    path = tmp_path / f"h{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(columns, row))) + "\n" for row in rows), encoding="utf-8")
    else:
        import csv

        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="," if suffix == ".csv" else "\t", quoting=csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE, escapechar="\\")
            writer.writerow(columns)
            writer.writerows(rows)
    bulk = _read_hypotheses_in_bulk(path, "id", "hypothesis")
    try:
        expected = _read_hypotheses(path, "id", "hypothesis")
    except BackendError:
        assert bulk is None
        return
    if bulk is not None:
        assert list(bulk) == expected


def test_a_clean_file_is_read_in_bulk(tmp_path):
    path = tmp_path / "h.tsv"
    path.write_text("id\thypothesis\n" + "".join(f"u{i}\tword {i}\n" for i in range(100)), encoding="utf-8")
    assert list(_read_hypotheses_in_bulk(path, "id", "hypothesis")) == _read_hypotheses(path, "id", "hypothesis")
