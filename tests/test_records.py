"""harness.records: the text files people have (encodings, BOM, JSON arrays, sniffed delimiters) read right."""

import codecs
import json

import pytest

from harness.errors import ManifestError
from harness.manifest import load_manifest
from harness.records import RecordsError, decode_text, read_delimited_records, read_json_records, sniff_delimiter


def test_utf8_bom_is_dropped_so_the_first_header_is_found(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(codecs.BOM_UTF8 + "id,text,accent\nu1,hello,us\nu2,bye,uk\n".encode())
    manifest = load_manifest(path, require_audio=False)
    assert [u.id for u in manifest] == ["u1", "u2"] and dict(manifest.utterances[0].tags) == {"accent": "us"}


def test_other_encodings_are_read_when_named(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_bytes("id\ttext\taccent\nu1\tcafé crème\tfrançais\n".encode("cp1252"))
    with pytest.raises(ManifestError, match=r"m\.tsv:2: \(value: '0xe9'\): byte at offset 21 \(column 7 of the line\) is not valid utf-8"):
        load_manifest(path, require_audio=False)
    [utterance] = load_manifest(path, require_audio=False, encoding="cp1252")
    assert utterance.text == "café crème" and utterance.tags["accent"] == "français"


def test_decode_text_reports_line_and_offset_after_a_bom(tmp_path):
    path = tmp_path / "h.txt"
    path.write_bytes(codecs.BOM_UTF8 + b"ok\nok\nbad \xff here\n")
    with pytest.raises(RecordsError) as caught:
        decode_text(path)
    problem = caught.value.problem
    assert (problem.line, problem.value) == (3, "0xff") and "offset 13" in problem.message and "column 5" in problem.message


def test_a_pretty_printed_json_array_is_read_with_each_objects_line(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"id": "u1", "text": "hello"}, {"id": "u2", "text": "bye", "speaker": "s"}], indent=2))
    records = read_json_records(path)
    assert [(r.line, r.fields["id"]) for r in records] == [(2, "u1"), (6, "u2")]
    assert [u.source_line for u in load_manifest(path, require_audio=False)] == [2, 6]


def test_objects_spread_over_lines_are_read_as_a_stream(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{\n  "id": "u1",\n  "text": "hello"\n}\n{\n  "id": "u2",\n  "text": "bye"\n}\n')
    assert [(u.id, u.source_line) for u in load_manifest(path, require_audio=False)] == [("u1", 1), ("u2", 5)]


def test_json_lines_keep_line_separators_inside_strings(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "u1", "text": "a\u2028b"}, ensure_ascii=False) + "\n" + json.dumps({"id": "u2", "text": "c"}) + "\n", encoding="utf-8")
    assert [u.text for u in load_manifest(path, require_audio=False)] == ["a\u2028b", "c"]


@pytest.mark.parametrize(("header", "suffix_delimiter", "expected"), [
    ("id,text,accent", ",", ","), ("id;text;accent", ",", ";"), ("id\ttext\taccent", ",", "\t"), ("id,text", "\t", ","), ("id", ",", ","),
])
def test_sniff_delimiter(header, suffix_delimiter, expected):
    assert sniff_delimiter(header, suffix_delimiter) == expected


@pytest.mark.parametrize(("text", "delimiter"), [("id;text;accent\nu1;hello, you;us\n", ";"), ("id\ttext\taccent\nu1\thello, you\tus\n", "\t")])
def test_a_csv_written_with_another_delimiter_is_read_as_written(tmp_path, text, delimiter):
    path = tmp_path / "m.csv"
    path.write_text(text)
    table = read_delimited_records(path, delimiter=",")
    assert table.delimiter == delimiter
    [utterance] = load_manifest(path, require_audio=False)
    assert utterance.text == "hello, you" and dict(utterance.tags) == {"accent": "us"}


def test_quoted_delimiters_and_tsv_quotes_stay_text(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text('id,text\nu1,"hello, world"\n')
    tsv_path = tmp_path / "m.tsv"
    tsv_path.write_text('id\ttext\nu1\the said "hi\n')
    assert load_manifest(csv_path, require_audio=False).utterances[0].text == "hello, world"
    assert load_manifest(tsv_path, require_audio=False).utterances[0].text == 'he said "hi'


def test_every_shifted_row_is_reported_and_good_rows_are_not(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("id,text,accent\nu1,ok,us\nu2,well, hi,uk\nu3,fine,us\nu4,short\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, require_audio=False)
    assert [(p.line, p.message.split(":")[0]) for p in caught.value.problems] == [
        (3, "row has 4 columns but the header has 3"), (5, "row has 2 columns but the header has 3"),
    ]


def test_nemo_offset_and_duration_become_the_utterance_segment(tmp_path):
    path = tmp_path / "nemo.json"
    path.write_text(json.dumps({"audio_filepath": "long.wav", "text": "a", "offset": 12.5, "duration": 3.25}) + "\n"
                    + json.dumps({"audio_filepath": "long2.wav", "text": "b"}) + "\n")
    first, second = load_manifest(path, require_audio=False)
    assert (first.offset_s, first.duration_s) == (12.5, 3.25) and (second.offset_s, second.duration_s) == (None, None)
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("id,text,offset,duration\nu1,a,1.5,2\nu2,b,,\n")
    one, two = load_manifest(csv_path, require_audio=False)
    assert (one.offset_s, one.duration_s) == (1.5, 2.0) and (two.offset_s, two.duration_s) == (None, None)
    assert dict(one.tags) == {}  # offset and duration describe the audio, they are not slices
