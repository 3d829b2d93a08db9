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
