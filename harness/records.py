"""Records from the text files people actually have: any encoding (UTF-8 by default, a BOM allowed),
JSON lines, a pretty-printed JSON array, or a delimited table whose delimiter is sniffed from the header.

Every problem names the file, the line and what to do; a row whose column count differs from the header
is reported, never silently shifted. Manifests and replayed hypotheses are both read through here.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, Problem

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
DEFAULT_ENCODING = "utf-8"
# Delimiters tried when a table's header does not contain the one its suffix promises.
SNIFFED_DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


class RecordsError(HarnessError):
    """A text file cannot be read as records at all (wrong encoding, unknown format)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(str(problem))


@dataclass(frozen=True)
class Record:
    """One record and where it came from: a line number (1-based, header = line 1) or a row index.

    `fields` is None for a line that could not be read; `parse_error` and `fix` then say why and what to do.
    """

    line: int
    fields: Mapping[str, Any] | None
    parse_error: str | None = None
    fix: str | None = None
    raw: str | None = None


def check_encoding(encoding: str, *, option: str = "--encoding") -> str:
    """The codec's canonical name, or a RecordsError naming the option when Python does not know it."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise RecordsError(Problem(file=option, line=None, field=option, value=encoding, message="unknown text encoding",
                                   fix="Give a Python codec name such as utf-8, cp1252, latin-1 or utf-16")) from None


def decode_text(path: Path, *, encoding: str = DEFAULT_ENCODING, option: str = "--encoding") -> str:
    """The file's text. A byte that is not valid in `encoding` is an error naming line and byte offset.

    A UTF-8 byte-order mark (spreadsheets on Windows write one) is dropped, so the first header is not
    read as "\\ufeffid". `option` is how the caller lets the user choose another encoding.
    """
    codec = check_encoding(encoding, option=option)
    data = path.read_bytes()
    if codec == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data, skipped = data[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
    else:
        skipped = 0
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise RecordsError(_decode_problem(path, data, exc, skipped=skipped, encoding=codec, option=option)) from None
    return text.removeprefix("\ufeff")


def _decode_problem(path: Path, data: bytes, exc: UnicodeDecodeError, *, skipped: int, encoding: str, option: str) -> Problem:
    start = exc.start
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    bad = data[start:exc.end]
    def give(value: str) -> str:
        return f"{option}{value}" if option.endswith("=") else f"{option} {value}"

    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        fix = f"The file is UTF-16 (it starts with a UTF-16 byte-order mark): re-save it as UTF-8, or give {give('utf-16')}"
    else:
        fix = f"Re-save the file as UTF-8, or give its encoding, e.g. {give('cp1252')} (Windows spreadsheets) or {give('latin-1')}"
    return Problem(
        file=str(path), line=line, field=None, value=" ".join(f"0x{b:02x}" for b in bad),
        message=f"byte at offset {start + skipped} (column {column} of the line) is not valid {encoding} ({exc.reason})", fix=fix,
    )


# ---------------------------------------------------------------------------------------------- JSON


def read_json_records(path: Path, *, encoding: str = DEFAULT_ENCODING, option: str = "--encoding") -> list[Record]:
    """One JSON object per line; also a JSON array of objects, or objects pretty-printed over several lines."""
    text = decode_text(path, encoding=encoding, option=option)
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _json_array(text)
    records = _json_lines(text)
    if any(r.fields is None for r in records) and stripped.startswith("{"):
        # One object spread over several lines fails line by line; read it as a stream of objects if that works.
        stream = _json_stream(text)
        if stream is not None:
            return stream
    return records


def _json_lines(text: str) -> list[Record]:
    records = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters splitlines breaks on.
    for line_number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append(Record(line_number, None, f"unparsable line: not valid JSON ({exc.msg} at column {exc.colno})",
                                  "Fix the line so it holds one whole JSON object, or delete it", raw=line))
            continue
        records.append(_object_record(line_number, value, raw=line))
    return records


def _object_record(line: int, value: Any, *, raw: str | None = None) -> Record:
    if isinstance(value, dict):
        return Record(line, value)
    return Record(line, None, f"expected a JSON object, got {type(value).__name__}",
                  'Write each utterance as an object, e.g. {"id": "u1", "audio": "u1.wav", "text": "..."}', raw=raw)


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _json_array(text: str) -> list[Record]:
    """Each element of a top-level array, with the line its value starts on."""
    decoder = json.JSONDecoder()
    position = _skip_space(text, text.index("[") + 1)
    records: list[Record] = []
    fix = "Fix the JSON (a missing comma or quote?), or write one object per line"
    while True:
        if position >= len(text):
            records.append(Record(_line_of(text, position), None, "the JSON array is not closed with ']'", fix))
            return records
        if text[position] == "]":
            break
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            records.append(Record(_line_of(text, exc.pos), None, f"not valid JSON ({exc.msg} at column {exc.colno})", fix))
            return records
        records.append(_object_record(_line_of(text, position), value))
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position = _skip_space(text, position + 1)
        elif position < len(text) and text[position] != "]":
            records.append(Record(_line_of(text, position), None, f"expected ',' or ']' after an array element, found {text[position]!r}", fix))
            return records
    trailing = _skip_space(text, position + 1)
    if trailing < len(text):
        records.append(Record(_line_of(text, trailing), None, "text after the end of the JSON array", "Delete it, or put every object inside the one array"))
    return records


def _json_stream(text: str) -> list[Record] | None:
    """Whitespace-separated JSON objects (pretty-printed JSONL); None unless the whole text is that."""
    decoder = json.JSONDecoder()
    position = _skip_space(text, 0)
    records = []
    while position < len(text):
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return None
        records.append(_object_record(_line_of(text, position), value))
        position = _skip_space(text, end)
    return records


# ----------------------------------------------------------------------------------------- delimited


@dataclass(frozen=True, kw_only=True)
class Table:
    """The records of a delimited file, its header, and the delimiter actually used."""

    records: list[Record]
    header: list[str]
    delimiter: str

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))


def sniff_delimiter(header_line: str, expected: str) -> str:
    """`expected` when the header holds it; otherwise the candidate the header holds most of.

    A '.csv' exported with ';' (spreadsheets in many European locales) or tabs is then read as written.
    """
    if expected in header_line:
        return expected
    counts = {candidate: header_line.count(candidate) for candidate in SNIFFED_DELIMITERS}
    best = max(counts, key=lambda candidate: counts[candidate])
    return best if counts[best] > 0 else expected


def read_delimited_records(path: Path, *, delimiter: str, encoding: str = DEFAULT_ENCODING, option: str = "--encoding") -> Table:
    """Rows as header -> value mappings; a row with more or fewer cells than the header is a Record error."""
    text = decode_text(path, encoding=encoding, option=option)
    first_line = next((line for line in text.split("\n") if line.strip()), "")
    delimiter = sniff_delimiter(first_line, delimiter)
    # Tab-separated corpora (Common Voice) keep quotes as part of the text; comma-like tables quote fields.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header: list[str] | None = None
    records: list[Record] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = row
                records.extend(_header_problems(header, reader.line_num, delimiter))
                continue
            line = reader.line_num
            if len(row) != len(header):
                records.append(_width_problem(row, header, line, delimiter))
                continue
            records.append(Record(line, dict(zip(header, row))))
    except csv.Error as exc:
        records.append(Record(reader.line_num, None, f"cannot be parsed as a table ({exc})", "Close the quoted field, or remove the stray quote"))
    return Table(records=records, header=header or [], delimiter=delimiter)


def _header_problems(header: list[str], line: int, delimiter: str) -> list[Record]:
    seen: set[str] = set()
    problems = []
    for name in header:
        if name in seen:
            problems.append(Record(line, None, f"column {name!r} appears twice in the header", "Rename one of the two columns"))
        seen.add(name)
    return problems


def _width_problem(row: list[str], header: list[str], line: int, delimiter: str) -> Record:
    name = DELIMITER_NAMES.get(delimiter, repr(delimiter))
    raw = delimiter.join(row)
    if len(row) > len(header):
        return Record(line, None,
                      f"row has {len(row)} columns but the header has {len(header)}: a {name} inside a value shifts every column after it",
                      f"Quote values that contain a {name} (e.g. \"hello{delimiter} world\"), or save the table with another delimiter", raw=raw)
    return Record(line, None, f"row has {len(row)} columns but the header has {len(header)}",
                  f"Give every column a value (an empty value is two {name}s in a row), or delete the row", raw=raw)


__all__ = [
    "DEFAULT_ENCODING", "JSON_SUFFIXES", "Record", "RecordsError", "Table", "check_encoding", "decode_text",
    "read_delimited_records", "read_json_records", "sniff_delimiter",
]
