"""Manifests as Arrow tables: JSONL, CSV/TSV and Parquet read by pyarrow and validated column by column.

`read_clean_table` answers one question in bulk: is this manifest clean, and if so, what are its
utterances? It returns None whenever it cannot be sure (any problem, or a shape whose meaning
depends on a record's own keys), and the caller then reads the file record by record, which
names every problem with its line, field and value. A clean million-line manifest never becomes
a million Python objects.
"""

from __future__ import annotations

import codecs
import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from harness.manifest import ColumnMap

TAG_PREFIX = "tag."
# The canonical manifest table: these columns, then one "tag.<name>" string column per tag.
CANONICAL = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("audio", pa.string()),
    ("audio_bytes", pa.binary()),
    ("speaker", pa.string()),
    ("offset_s", pa.float64()),
    ("duration_s", pa.float64()),
    ("source_line", pa.int64()),
])
# Exactly the characters str.isspace() accepts (tests/test_manifest.py checks the list), so a
# reference RE2 calls blank is one Python's `text.strip()` empties, and no other.
PYTHON_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in PYTHON_WHITESPACE) + "]*$"
NEMO_AUDIO_KEY = "audio_filepath"


def read_clean_table(path: Path, fmt: str, *, columns: ColumnMap, require_audio: bool, integer_tags_ok: bool, non_tag_keys: frozenset[str]) -> pa.Table | None:
    """The canonical table of a clean manifest, or None when the record-by-record reader must decide."""
    raw = _read_raw(path, fmt)
    if raw is None:
        return None
    # A JSON record may leave a key out, which Arrow shows as null like an explicit null.
    table = _canonical(raw, base=path.parent, columns=columns, require_audio=require_audio, integer_tags_ok=integer_tags_ok, non_tag_keys=non_tag_keys, keys_may_be_absent=fmt == "jsonl")
    del raw
    # The reader's working memory is free now; hand it back to the system rather than keep it pooled
    # (about 1.5x the file's size at a million lines).
    pa.default_memory_pool().release_unused()
    return table


def _read_raw(path: Path, fmt: str) -> tuple[pa.Table, pa.Array] | None:
    """(table, source line of each row), or None if pyarrow reads the file differently from Python."""
    import pyarrow.lib

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            return table, pa.array(range(1, table.num_rows + 1), type=pa.int64())
        with path.open("rb") as handle:
            if handle.read(3) == codecs.BOM_UTF8:
                return None  # the record reader drops it; line and column arithmetic here would not
        if fmt == "jsonl":
            import pyarrow.json as pj

            table = pj.read_json(path)
            first_line = 1
        else:
            import pyarrow.csv as pcsv

            from harness.records import sniff_delimiter

            with path.open(encoding="utf-8", newline="") as handle:
                first = handle.readline()
            # As harness.records reads a table: the delimiter its header holds, quotes literal in tab-separated text.
            delimiter = sniff_delimiter(first, "\t" if fmt in ("tsv", "tab") else ",")
            header = next(csv.reader([first], delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL), None)
            if not header or len(set(header)) != len(header) or not first.strip():
                return None
            table = pcsv.read_csv(
                path,
                parse_options=pcsv.ParseOptions(delimiter=delimiter, quote_char=False if delimiter == "\t" else '"'),
                convert_options=pcsv.ConvertOptions(column_types={name: pa.string() for name in header}, strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
            first_line = 2  # the header is line 1, as an editor shows it
        # The JSON reader does not check that strings are UTF-8; the record reader names the bad byte.
        table.validate(full=True)
    except (pyarrow.lib.ArrowException, UnicodeDecodeError, OSError):
        return None
    if not table.num_rows:
        return None  # an empty manifest is a problem the record reader reports
    # Line numbers follow from row numbers only when every row is one line: no blank lines, no
    # value spanning lines. Otherwise let the record reader count them.
    if _count_lines(path) != table.num_rows + first_line - 1:
        return None
    if len(set(table.column_names)) != table.num_columns:
        return None
    return table, pa.array(range(first_line, first_line + table.num_rows), type=pa.int64())


def _count_lines(path: Path) -> int:
    """Lines as Python iterates them: newline-terminated, plus a last line without one."""
    count, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _canonical(raw: tuple[pa.Table, pa.Array], *, base: Path, columns: ColumnMap, require_audio: bool, integer_tags_ok: bool, non_tag_keys: frozenset[str], keys_may_be_absent: bool) -> pa.Table | None:
    table, lines = raw
    n = table.num_rows
    names = set(table.column_names)

    # Which field holds the audio, and which the duration, is decided per record by the record
    # reader; with both candidates present a column cannot say, so that reader decides.
    if columns.audio != NEMO_AUDIO_KEY and columns.audio in names and NEMO_AUDIO_KEY in names:
        return None
    audio_key = columns.audio if columns.audio in names or NEMO_AUDIO_KEY not in names else NEMO_AUDIO_KEY
    if ("duration" in names and "duration_s" in names) or ("offset" in names and "offset_s" in names):
        return None

    audio = _audio_paths(table, audio_key, base, require_audio)
    if audio is None:
        return None

    segment = _segment(table, n)
    if segment is None:
        return None
    offset, duration = segment
    ids = _ids(table, columns.id, table.column(audio_key) if audio_key in names else None, offset, n)
    if ids is None or pc.count_distinct(ids).as_py() != n:
        return None

    text = table.column(columns.text) if columns.text in names else None
    if text is None or not _is_string(text.type):
        if n:
            return None
        text = pa.chunked_array([], type=pa.string())
    text = text.cast(pa.string())
    if text.null_count or pc.any(pc.match_substring_regex(text, _BLANK)).as_py():
        return None

    speaker = _speaker(table, columns.speaker, n)
    if speaker is None:
        return None

    tags = _tags(table, columns=columns, used={columns.id, audio_key, columns.text, columns.speaker}, integer_tags_ok=integer_tags_ok, non_tag_keys=non_tag_keys, keys_may_be_absent=keys_may_be_absent)
    if tags is None:
        return None

    arrays = [ids, text, audio, pa.nulls(n, pa.binary()), speaker, offset, duration, lines]
    fields = list(CANONICAL)
    for name, column in tags:
        arrays.append(column)
        fields.append(pa.field(TAG_PREFIX + name, pa.string()))
    return pa.Table.from_arrays([_combined(a) for a in arrays], schema=pa.schema(fields))


def _ids(table: pa.Table, id_key: str, raw_audio: pa.ChunkedArray | None, offset: pa.Array, n: int) -> pa.Array | None:
    if id_key in table.column_names:
        column = table.column(id_key)
        if _is_string(column.type):
            column = column.cast(pa.string())
            missing = pc.or_kleene(pc.is_null(column), pc.equal(column, "")).fill_null(True)
        elif pa.types.is_integer(column.type):
            column = column.cast(pa.string())
            missing = pc.is_null(column)
        elif pa.types.is_null(column.type):
            column = pa.nulls(n, pa.string())
            missing = pc.is_null(column)
        else:
            return None
    else:
        column = pa.nulls(n, pa.string())
        missing = pc.is_null(column)
    if not pc.any(missing).as_py():
        return _combined(column)
    # A NeMo manifest has no ids: the audio path without its suffix is unique within a corpus, and
    # with the offset, unique among the segments of one recording.
    if raw_audio is None or not _is_string(raw_audio.type):
        return None
    values = column.to_pylist()
    audio_values = raw_audio.cast(pa.string()).to_pylist()
    offsets = offset.to_pylist()
    for index in pc.indices_nonzero(_combined(missing)).to_pylist():
        raw = audio_values[index]
        if not raw:
            return None
        try:
            values[index] = str(Path(raw).with_suffix("")) + ("" if offsets[index] is None else f"@{offsets[index]:g}s")
        except ValueError:
            return None
    return pa.array(values, type=pa.string())


def _audio_paths(table: pa.Table, audio_key: str, base: Path, require_audio: bool) -> pa.Array | None:
    n = table.num_rows
    if audio_key not in table.column_names or pa.types.is_null(table.column(audio_key).type):
        return None if require_audio and n else pa.nulls(n, pa.string())
    column = table.column(audio_key)
    if not _is_string(column.type):
        return None  # a Hugging Face audio struct or a number: the record reader decides
    raw = _combined(column.cast(pa.string()))
    raw = pc.if_else(pc.equal(raw, "").fill_null(True), pa.scalar(None, pa.string()), raw)
    if require_audio and raw.null_count:
        return None
    prefix = "" if str(base) == "." else str(base).rstrip("/") + "/"
    joined = pc.if_else(pc.starts_with(raw, "/"), raw, pc.binary_join_element_wise(prefix, raw, ""))
    if pc.any(pc.starts_with(raw, "~")).as_py():
        values = joined.to_pylist()
        for index, value in enumerate(raw.to_pylist()):
            if value is not None and value.startswith("~"):
                candidate = Path(value).expanduser()
                values[index] = str(candidate if candidate.is_absolute() else base / candidate)
        joined = pa.array(values, type=pa.string())
    if require_audio:
        isfile = os.path.isfile
        if not all(isfile(value) for value in joined.to_pylist()):
            return None
    return joined


def _speaker(table: pa.Table, key: str, n: int) -> pa.Array | None:
    if key not in table.column_names:
        return pa.nulls(n, pa.string())
    column = table.column(key)
    if pa.types.is_null(column.type):
        return pa.nulls(n, pa.string())
    if not (_is_string(column.type) or pa.types.is_integer(column.type)):
        return None
    column = _combined(column.cast(pa.string()))
    return pc.if_else(pc.equal(column, "").fill_null(True), pa.scalar(None, pa.string()), column)


def _segment(table: pa.Table, n: int) -> tuple[pa.Array, pa.Array] | None:
    """(offset_s, duration_s) as harness.manifest._segment reads them, or None for anything it might
    call a problem (a negative offset, a duration that is not positive, text that is not a number)."""
    out = []
    for name, keys in (("offset", ("offset", "offset_s")), ("duration", ("duration", "duration_s"))):
        key = next((k for k in keys if k in table.column_names), None)
        if key is None or pa.types.is_null(table.column(key).type):
            out.append(pa.nulls(n, pa.float64()))
            continue
        column = _combined(table.column(key))
        if _is_string(column.type):
            text = column.cast(pa.string())
            blank = pc.match_substring_regex(text, _BLANK).fill_null(True)
            try:
                numbers = pc.if_else(blank, pa.scalar(None, pa.string()), text).cast(pa.float64())
            except pa.ArrowInvalid:
                return None  # Python's float() may read what Arrow does not ("1_000", " 2 "): the record reader decides
            if pc.any(pc.invert(pc.is_finite(numbers))).as_py():
                return None
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            numbers = column.cast(pa.float64())
            numbers = pc.if_else(pc.is_nan(numbers).fill_null(False), pa.scalar(None, pa.float64()), numbers)  # NaN: not given
            if pc.any(pc.is_inf(numbers)).as_py():
                return None
        else:
            return None
        bad = pc.less(numbers, 0.0) if name == "offset" else pc.less_equal(numbers, 0.0)
        if pc.any(bad).as_py():
            return None
        out.append(numbers)
    return out[0], out[1]


def _tags(table: pa.Table, *, columns: ColumnMap, used: set[str], integer_tags_ok: bool, non_tag_keys: frozenset[str], keys_may_be_absent: bool) -> list[tuple[str, pa.Array]] | None:
    """Tag columns in first-appearance order, missing values as nulls; None if any value is a problem."""
    nested: dict[str, pa.Array] = {}
    if "tags" in table.column_names:
        column = table.column("tags")
        if pa.types.is_struct(column.type):
            combined = _combined(column)
            for index in range(column.type.num_fields):
                nested[str(column.type.field(index).name)] = _struct_child(combined, index)
        elif not pa.types.is_null(column.type):
            return None
    # As the record reader does: nested tags first, then the chosen (or every other) top-level field.
    # A name in both is decided by each record's own keys, which a column cannot tell apart.
    candidates: dict[str, pa.Array] = dict(nested)
    if columns.tags is not None:
        chosen = list(columns.tags)
        if any(name not in table.column_names or name in nested for name in chosen):
            return None
        if keys_may_be_absent and any(table.column(name).null_count for name in chosen):
            return None  # a record without the chosen field is a problem; an explicit null is not
    else:
        chosen = [name for name in table.column_names if name not in used and name not in non_tag_keys]
        if any(name in nested for name in chosen):
            return None
    for name in chosen:
        candidates[name] = _combined(table.column(name))
    tags: list[tuple[int, int, str, pa.Array]] = []
    for position, (name, column) in enumerate(candidates.items()):
        values = _tag_values(column, integer_tags_ok, columns.missing_values)
        if values is None:
            return None
        if values.null_count == len(values):
            continue
        first = pc.index(pc.is_valid(values), True).as_py()
        tags.append((first, position, name, values))
    tags.sort(key=lambda entry: (entry[0], entry[1]))
    return [(name, values) for _, _, name, values in tags]


def _tag_values(column: pa.Array, integer_tags_ok: bool, missing_values: tuple[str, ...]) -> pa.Array | None:
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.string())
    if pa.types.is_floating(kind):
        # NaN means "not given"; any other number where a tag belongs is a problem to report.
        return pa.nulls(len(column), pa.string()) if pc.all(pc.or_kleene(pc.is_null(column), pc.is_nan(column)).fill_null(True)).as_py() else None
    if pa.types.is_integer(kind):
        if not integer_tags_ok and column.null_count != len(column):
            return None
    elif not _is_string(kind):
        return None if column.null_count != len(column) else pa.nulls(len(column), pa.string())
    text = column.cast(pa.string())
    missing = pc.is_in(text, value_set=pa.array(list(missing_values), type=pa.string()))
    return pc.if_else(missing.fill_null(True), pa.scalar(None, pa.string()), text)


def _struct_child(column: pa.Array, index: int) -> pa.Array:
    # A null struct (no "tags" in that record) makes every child null there.
    child = column.field(index)
    return pc.if_else(pc.is_valid(column), child, pa.scalar(None, child.type)) if column.null_count else child


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or (pa.types.is_dictionary(kind) and _is_string(kind.value_type))


def _combined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
