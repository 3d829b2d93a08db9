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
