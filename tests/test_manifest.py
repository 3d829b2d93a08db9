import json

import numpy as np
import pandas as pd
import pytest
import soundfile

from harness.errors import ManifestError
from harness.manifest import ColumnMap, load_manifest, validate_manifest


@pytest.fixture
def audio_dir(tmp_path):
    (tmp_path / "audio").mkdir()
    for name in ("a", "b", "c"):
        soundfile.write(tmp_path / "audio" / f"{name}.wav", np.zeros(1600, dtype=np.float32), 16000)
    return tmp_path


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_native_shape(audio_dir):
    manifest_path = write_jsonl(audio_dir / "m.jsonl", [
        {"id": "u1", "audio": "audio/a.wav", "text": "hello there", "speaker": "s1", "tags": {"accent": "us", "condition": "quiet"}},
        {"id": "u2", "audio": "audio/b.wav", "text": "good morning", "speaker": "s2", "tags": {"accent": "in"}},
    ])
    manifest = load_manifest(manifest_path)
    assert [u.id for u in manifest] == ["u1", "u2"]
    first = manifest.utterances[0]
    assert first.audio == audio_dir / "audio" / "a.wav"
    assert dict(first.tags) == {"accent": "us", "condition": "quiet"}
    assert first.source_line == 1
    assert len(manifest.sha256) == 64 and manifest.format == "jsonl"


def test_nemo_keys(audio_dir):
    manifest_path = write_jsonl(audio_dir / "nemo.json", [
        {"audio_filepath": "audio/a.wav", "text": "hello", "duration": 0.1, "accent": "scottish"},
    ])
    [utterance] = load_manifest(manifest_path)
    assert utterance.id == "audio/a" and utterance.duration_s == 0.1
    assert dict(utterance.tags) == {"accent": "scottish"}


def test_every_problem_is_collected_with_line_field_value_and_fix(audio_dir):
    manifest_path = write_jsonl(audio_dir / "bad.jsonl", [
        {"id": "u1", "audio": "audio/a.wav", "text": "fine"},
        {"id": "u1", "audio": "audio/b.wav", "text": "duplicate id"},
        {"id": "u3", "audio": "audio/missing.wav", "text": "no audio file"},
        {"id": "u4", "audio": "audio/c.wav", "text": "   "},
        {"id": "u5", "audio": "audio/c.wav", "text": "numeric tag", "tags": {"age": 30}},
        "{not json",
    ])
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest_path)
    problems = caught.value.problems
    assert [(p.line, p.field) for p in problems] == [(2, "id"), (3, "audio"), (4, "text"), (5, "tags.age"), (6, None)]
    text = str(caught.value)
    assert f"{manifest_path}:2: field 'id' (value: 'u1'): duplicate id (first seen on line 1). Give every utterance a unique id" in text
    assert "audio file not found" in text and "empty reference transcript" in text
    assert "tag values must be strings" in text and "unparsable line" in text
    assert validate_manifest(manifest_path) == problems


def test_audio_optional_for_replay(tmp_path):
    manifest_path = write_jsonl(tmp_path / "m.jsonl", [{"id": "u1", "text": "hello"}])
    with pytest.raises(ManifestError, match="missing audio"):
        load_manifest(manifest_path)
    [utterance] = load_manifest(manifest_path, require_audio=False)
    assert utterance.audio is None


def test_tsv_with_column_mapping_and_missing_values(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text('client\tclip\tsentence\taccent\tage\nspk1\tc1.mp3\t"Quoted" words\tus\tNA\nspk2\tc2.mp3\tMore words\tNA\ttwenties\n', encoding="utf-8")
    columns = ColumnMap(id="clip", text="sentence", speaker="client", tags=("accent", "age"), missing_values=("", "NA"))
    first, second = load_manifest(path, columns=columns, require_audio=False)
    # TSV fields are taken literally: a leading quote is part of the reference, not CSV quoting.
    assert first.text == '"Quoted" words' and first.speaker == "spk1"
    assert dict(first.tags) == {"accent": "us"} and dict(second.tags) == {"age": "twenties"}


def test_tag_column_missing_is_reported(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("id,text\nu1,hello\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="tag column 'accent' is missing"):
        load_manifest(path, columns=ColumnMap(tags=("accent",)), require_audio=False)


def test_parquet_extra_columns_become_tags(audio_dir):
    path = audio_dir / "m.parquet"
    pd.DataFrame({"id": ["u1"], "audio": ["audio/a.wav"], "text": ["hi"], "speaker": ["s"], "dialect": ["south"]}).to_parquet(path)
    [utterance] = load_manifest(path)
    assert dict(utterance.tags) == {"dialect": "south"} and utterance.audio.exists()


def test_huggingface_dataset_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    wav = tmp_path / "clip.wav"
    soundfile.write(wav, np.zeros(800, dtype=np.float32), 16000)
    dataset = datasets.Dataset.from_dict({"id": ["u1"], "audio": [str(wav)], "text": ["hello"], "speaker": ["s1"], "accent": ["us"]})
    dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
    dataset.save_to_disk(tmp_path / "ds")
    manifest = load_manifest(tmp_path / "ds")
    [utterance] = manifest
    assert manifest.format == "huggingface"
    assert utterance.text == "hello" and dict(utterance.tags) == {"accent": "us"}
    assert utterance.audio_bytes is not None or utterance.audio == wav


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ManifestError, match="manifest file not found"):
        load_manifest(tmp_path / "nope.jsonl")


def test_huggingface_audio_bytes_are_decoded_by_the_runner(tmp_path):
    """A dataset that embeds audio as bytes (no file on disk) is transcribed from memory."""
    import io

    datasets = pytest.importorskip("datasets")
    from harness.runner import audio_loader

    buffer = io.BytesIO()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    soundfile.write(buffer, tone, 8000, format="FLAC")
    dataset = datasets.Dataset.from_dict({"id": ["u1"], "audio": [{"bytes": buffer.getvalue(), "path": None}], "text": ["tone"]})
    dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
    dataset.save_to_disk(tmp_path / "ds")
    [utterance] = load_manifest(tmp_path / "ds")
    assert utterance.audio_bytes is not None and utterance.audio is None
    samples = audio_loader(16000)(utterance)
    assert samples.shape == (16000,) and np.max(np.abs(samples)) == pytest.approx(0.3, abs=0.02)


# -- the bulk (columnar) reader ----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from harness.manifest import NON_TAG_KEYS, _build_utterances, _read_parquet  # noqa: E402
from harness.manifest_table import PYTHON_WHITESPACE, read_clean_table  # noqa: E402
from harness.records import read_delimited_records, read_json_records  # noqa: E402


def test_python_whitespace_list_is_exactly_str_isspace():
    assert PYTHON_WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def record_reader(path, fmt):
    readers = {"jsonl": read_json_records, "csv": lambda p: read_delimited_records(p, delimiter=",").records,
               "tsv": lambda p: read_delimited_records(p, delimiter="\t").records, "parquet": _read_parquet}
    return readers[fmt](path)


def both_readers(path, fmt, columns=ColumnMap(), require_audio=False):
    bulk = read_clean_table(path, fmt, columns=columns, require_audio=require_audio, integer_tags_ok=fmt != "jsonl", non_tag_keys=NON_TAG_KEYS)
    utterances, problems = _build_utterances(record_reader(path, fmt), source=str(path), base=path.parent, columns=columns, require_audio=require_audio, integer_tags_ok=fmt != "jsonl")
    return bulk, utterances, problems


def as_tuples(utterances):
    return [(u.id, u.text, u.audio, u.speaker, u.duration_s, dict(u.tags), u.source_line) for u in utterances]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet"])
def test_clean_manifests_are_read_in_bulk(audio_dir, fmt):
    rows = [{"id": f"u{i}", "audio": f"audio/{'abc'[i % 3]}.wav", "text": f"hello number {i}", "speaker": f"s{i % 2}", "accent": ["us", "in", "NA"][i % 3]} for i in range(7)]
    path = audio_dir / f"m.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        pd.DataFrame(rows).to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    columns = ColumnMap(missing_values=("", "NA"))
    bulk, utterances, problems = both_readers(path, fmt, columns=columns, require_audio=True)
    assert bulk is not None and not problems
    manifest = load_manifest(path, columns=columns)
    assert as_tuples(manifest) == as_tuples(utterances)
    assert manifest.tag_names == ["accent"] and dict(manifest.utterances[2].tags) == {}
    assert manifest.utterances[3].source_line == (4 if fmt in ("jsonl", "parquet") else 5)


def test_blank_lines_fall_back_to_the_record_reader_and_keep_line_numbers(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "u1", "text": "a"}\n\n{"id": "u2", "text": "b"}\n', encoding="utf-8")
    bulk, utterances, _ = both_readers(path, "jsonl")
    assert bulk is None
    assert [u.source_line for u in load_manifest(path, require_audio=False)] == [1, 3]


def test_a_problem_anywhere_is_reported_by_line_even_in_a_large_manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    rows = [{"id": f"u{i}", "text": "words here", "tags": {"accent": "us"}} for i in range(5000)]
    rows[4321]["text"] = "\u3000 "
    rows[4999]["id"] = "u7"
    write_jsonl(path, rows)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, require_audio=False)
    assert [(p.line, p.field, p.value) for p in caught.value.problems] == [(4322, "text", "\u3000 "), (5000, "id", "u7")]


# Clean records with a few fields changed (or removed): each change may or may not be a problem.
DELETE = object()
CHANGES = {
    "id": [None, "", 3, True, "u0"],
    "text": [None, "", " ", "\u3000", "\x1c", 7, "a\u3000b"],
    "speaker": [4, "", True, None, 1.5, DELETE],
    "audio": ["audio/a.wav", "./audio/b.wav", "audio/missing.wav", "", 1, "~/nowhere.wav", None, DELETE],
    "audio_filepath": ["audio/c.wav", "audio/missing.flac"],
    "tags": ["flat", None, {"age": 30}, {"age": 1.5}, {"age": None}, {"age": True}, {"accent": "NA"}, {"accent": ""}, {"gender": "f"}, DELETE],
    "region": ["north", 5, 2.5, None, "NA", float("nan"), DELETE],
    "accent": ["top-level"],
    "duration": ["2", 3, 1.5, None, True, DELETE, 0, -1.0, "abc", " 2 ", "nan", float("nan")],
    "duration_s": [0.5],
    "offset": [0.0, 0.5, -1, "2", " ", None, DELETE, True, float("inf"), "1e1"],
    "offset_s": [1.25],
}
change = st.sampled_from(sorted(CHANGES)).flatmap(lambda key: st.tuples(st.just(key), st.sampled_from(CHANGES[key])))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 5), changes=st.lists(st.tuples(st.integers(0, 4), change), max_size=3), everywhere=st.booleans(),
    require_audio=st.booleans(), tag_columns=st.sampled_from([None, None, ("region",), ("age",)]),
)
def test_bulk_reader_agrees_with_the_record_reader_on_jsonl(audio_dir, n, changes, everywhere, require_audio, tag_columns):
    """Whenever the bulk reader answers, it gives exactly the utterances the record reader gives;
    whenever the record reader finds a problem, the bulk reader does not answer."""
    records = [{"id": f"u{i}", "text": f"words {i}", "speaker": f"s{i % 2}", "audio": f"audio/{'abc'[i % 3]}.wav", "region": "south", "tags": {"accent": "us"}, "duration": 1.0} for i in range(n)]
    for index, (key, value) in changes:
        for record in records if everywhere else records[index : index + 1]:
            if value is DELETE:
                record.pop(key, None)
            else:
                record[key] = f"{value}{index}" if everywhere and key == "id" and isinstance(value, str) and value else value
    path = audio_dir / "h.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    columns = ColumnMap(tags=tag_columns, missing_values=("", "NA"))
    bulk, utterances, problems = both_readers(path, "jsonl", columns=columns, require_audio=require_audio)
    if problems:
        assert bulk is None, problems
    elif bulk is not None:
        from harness.manifest import Manifest

        manifest = Manifest(source=str(path), sha256="", format="jsonl", table=bulk)
        assert as_tuples(manifest) == as_tuples(utterances)
        assert set(manifest.tag_names) == {name for u in utterances for name in u.tags}
    if n and not changes and tag_columns is None:
        assert bulk is not None  # clean and plainly shaped: read in bulk


flat_value = st.sampled_from(["u1", "u2", "", "NA", " ", "\u00a0", "x y", "3"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(flat_value, flat_value, flat_value, flat_value), min_size=1, max_size=6), fmt=st.sampled_from(["csv", "tsv", "parquet"]))
def test_bulk_reader_agrees_with_the_record_reader_on_tables(audio_dir, rows, fmt):
    frame = pd.DataFrame(rows, columns=["id", "text", "speaker", "accent"])
    path = audio_dir / f"h.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    columns = ColumnMap(missing_values=("", "NA"))
    bulk, utterances, problems = both_readers(path, fmt, columns=columns)
    if problems:
        assert bulk is None
    else:
        assert bulk is not None  # a clean flat table is always read in bulk
        from harness.manifest import Manifest

        assert as_tuples(Manifest(source=str(path), sha256="", format=fmt, table=bulk)) == as_tuples(utterances)
