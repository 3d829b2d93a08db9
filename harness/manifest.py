"""Utterances and the manifests that list them: loading from JSONL, CSV/TSV, Parquet or a
Hugging Face dataset, mapping columns, and validating everything in one pass.

A manifest is held as columns (an Arrow table, see harness.manifest_table); Utterance objects are
made as they are iterated, so a million-line manifest costs its text, not a million objects.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pyarrow as pa

from harness.errors import ManifestError, Problem
from harness.manifest_table import CANONICAL, TAG_PREFIX, read_clean_table
from harness.records import DEFAULT_ENCODING, JSON_SUFFIXES, Record, RecordsError, read_delimited_records, read_json_records

# Keys that describe the utterance itself rather than a slice it belongs to.
NEMO_AUDIO_KEY = "audio_filepath"
NON_TAG_KEYS = frozenset({"duration", "offset", "duration_s", "offset_s", "tags", "pred_text", "audio_filepath", "lang"})
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
HF_PREFIX = "hf://"
# Files that mark a folder written by datasets' save_to_disk (a Dataset or a DatasetDict).
SAVED_DATASET_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
FORMATS_HELP = (
    "Give a .jsonl/.json/.ndjson file (JSON lines or a JSON array), a .csv/.tsv/.tab table, a .parquet/.pq file, "
    "a folder written by datasets' save_to_disk, or hf://owner/name for a Hugging Face Hub dataset"
)


@dataclass(frozen=True, kw_only=True)
class ColumnMap:
    """Which input field holds which utterance attribute.

    `tags` None means every remaining column is a tag; a tuple selects (and orders) them.
    `missing_values` are tag values that mean "not given" (e.g. "NA") and are dropped.
    """

    id: str = "id"
    audio: str = "audio"
    text: str = "text"
    speaker: str = "speaker"
    tags: tuple[str, ...] | None = None
    missing_values: tuple[str, ...] = ("",)


@dataclass(frozen=True, kw_only=True)
class Utterance:
    """One item to transcribe and score. Tags are free-form slice labels, never inferred from audio."""

    id: str
    text: str
    audio: Path | None = None
    audio_bytes: bytes | None = field(default=None, repr=False)
    speaker: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    offset_s: float | None = None  # start of the utterance in its audio file (NeMo `offset`); None: the start
    duration_s: float | None = None  # length to decode from offset_s (NeMo `duration`); None: to the end
    source_line: int | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None or self.audio_bytes is not None


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """An ordered, validated collection of utterances and the fingerprint of where they came from.

    `table` holds one row per utterance: id, text, audio, audio_bytes, speaker, duration_s,
    source_line, then a "tag.<name>" column per tag (null where an utterance lacks it).
    """

    source: str
    sha256: str
    format: str
    table: pa.Table

    @classmethod
    def from_utterances(cls, utterances: Iterable[Utterance], *, source: str, sha256: str, format: str) -> Manifest:
        return cls(source=source, sha256=sha256, format=format, table=utterances_table(list(utterances)))

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[Utterance]:
        for start in range(0, len(self), 4096):
            yield from self.take(range(start, min(start + 4096, len(self))))

    @cached_property
    def utterances(self) -> tuple[Utterance, ...]:
        """Every utterance as an object; fine for small manifests, costly for millions (iterate instead)."""
        return tuple(self)

    @property
    def tag_names(self) -> list[str]:
        return [name[len(TAG_PREFIX) :] for name in self.table.column_names if name.startswith(TAG_PREFIX)]

    def by_id(self) -> dict[str, Utterance]:
        return {u.id: u for u in self}

    def take(self, indices: Iterable[int]) -> list[Utterance]:
        """The utterances at these row positions, in that order."""
        rows = self.table.take(pa.array(list(indices), type=pa.int64()))
        columns = {name: rows.column(name).to_pylist() for name in rows.column_names}
        tag_columns = [(name[len(TAG_PREFIX) :], columns[name]) for name in rows.column_names if name.startswith(TAG_PREFIX)]
        return [
            Utterance(
                id=columns["id"][i], text=columns["text"][i], audio=None if columns["audio"][i] is None else Path(columns["audio"][i]),
                audio_bytes=columns["audio_bytes"][i], speaker=columns["speaker"][i], offset_s=columns["offset_s"][i], duration_s=columns["duration_s"][i],
                tags=MappingProxyType({name: values[i] for name, values in tag_columns if values[i] is not None}), source_line=columns["source_line"][i],
            )
            for i in range(rows.num_rows)
        ]

    @classmethod
    def from_file(cls, path: str | Path, *, columns: ColumnMap = ColumnMap(), require_audio: bool = True, encoding: str = DEFAULT_ENCODING) -> Manifest:
        return load_manifest(path, columns=columns, require_audio=require_audio, encoding=encoding)


def load_manifest(path: str | Path, *, columns: ColumnMap = ColumnMap(), require_audio: bool = True, split: str | None = None,
                  encoding: str = DEFAULT_ENCODING) -> Manifest:
    """Load and validate a manifest. Every problem is collected into one ManifestError.

    `require_audio=False` (the replay backend) accepts utterances without audio and does not
    check that audio files exist. `encoding` applies to JSON and delimited text (UTF-8 by default;
    a UTF-8 byte-order mark is always accepted). A Hugging Face Hub dataset is looked up only when
    named explicitly as hf://owner/name, so a mistyped path is "not found", never a network request.
    """
    source = str(path)
    try:
        if source.startswith(HF_PREFIX):
            records, fmt, sha256 = _read_hf_dataset(source, source[len(HF_PREFIX):], split=split, from_disk=False)
            base = Path.cwd()
        else:
            path = Path(path).expanduser()
            if path.is_dir():
                records, fmt, sha256 = _read_hf_dataset(source, str(path), split=split, from_disk=True)
                base = path
            elif not path.exists():
                raise ManifestError([_not_found(source, path)])
            else:
                sha256 = _sha256_file(path)
                suffix = path.suffix.lower()
                fmt = "jsonl" if suffix in JSON_SUFFIXES else suffix.lstrip(".") if suffix in TABLE_SUFFIXES else "parquet" if suffix in PARQUET_SUFFIXES else None
                # A clean manifest is read and checked in bulk; anything else is read record by record,
                # which names every problem (the bulk reader only ever says "clean" or "not sure").
                if fmt is not None and _is_utf8(encoding):
                    table = read_clean_table(path, fmt, columns=columns, require_audio=require_audio, integer_tags_ok=fmt != "jsonl", non_tag_keys=NON_TAG_KEYS)
                    if table is not None:
                        return Manifest(source=source, sha256=sha256, format=fmt, table=table)
                if suffix in JSON_SUFFIXES:
                    records = read_json_records(path, encoding=encoding)
                elif suffix in TABLE_SUFFIXES:
                    delimited = read_delimited_records(path, delimiter=TABLE_SUFFIXES[suffix], encoding=encoding)
                    _check_table_header(source, delimited.header, columns)
                    records = delimited.records
                elif suffix in PARQUET_SUFFIXES:
                    records = _read_parquet(path)
                else:
                    raise ManifestError([Problem(file=source, line=None, field=None, value=path.suffix or path.name, message="unknown manifest format", fix=FORMATS_HELP)])
                base = path.parent
    except RecordsError as error:
        raise ManifestError([error.problem]) from None
    if not records:
        raise ManifestError([Problem(file=source, line=None, field=None, value=None, message="the manifest holds no utterances",
                                     fix="Add one utterance per line (JSONL) or per row (CSV, TSV, Parquet); a run of nothing would report nothing")])
    # JSON says what it means by type, so a number where a tag belongs is a mistake to report;
    # typed tables (Parquet, datasets) legitimately store integer tags such as age.
    utterances, problems = _build_utterances(records, source=source, base=base, columns=columns, require_audio=require_audio, integer_tags_ok=fmt != "jsonl")
    if problems:
        raise ManifestError(problems)
    return Manifest.from_utterances(utterances, source=source, sha256=sha256, format=fmt)


def _is_utf8(encoding: str) -> bool:
    import codecs

    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False  # the record reader names the unknown encoding


def _not_found(source: str, path: Path) -> Problem:
    """'not found', with the nearest names in the folder, or the hf:// spelling for what looks like a Hub id."""
    folder = path.parent
    hints = []
    if folder.is_dir():
        close = difflib.get_close_matches(path.name, [p.name for p in folder.iterdir()], n=3, cutoff=0.6)
        if close:
            hints.append(f"Did you mean {', '.join(repr(str(folder / name)) for name in close)}?")
    elif str(folder) not in ("", "."):
        hints.append(f"The folder {str(folder)!r} does not exist either.")
    if path.suffix == "" and source.count("/") == 1 and not source.startswith((".", "/", "~")):
        hints.append(f"For a Hugging Face Hub dataset, write {HF_PREFIX}{source}.")
    return Problem(file=source, line=None, field=None, value=None, message="manifest file not found",
                   fix=" ".join(["Check the path (relative paths start from the current folder).", *hints]))


def _check_table_header(source: str, header: list[str], columns: ColumnMap) -> None:
    """One problem for a column missing from the header, instead of the same problem on every row."""
    problems = []
    present = set(header)
    shown = ", ".join(repr(name) for name in header[:20]) + (" ..." if len(header) > 20 else "")
    if columns.text not in present:
        problems.append(Problem(file=source, line=1, field=columns.text, value=None, message=f"no {columns.text!r} column in the header (columns: {shown})",
                                fix="Name the reference transcript's column with --text-column"))
    if columns.id not in present and columns.audio not in present and NEMO_AUDIO_KEY not in present:
        problems.append(Problem(file=source, line=1, field=columns.id, value=None, message=f"no {columns.id!r} column in the header (columns: {shown})",
                                fix="Name the utterance id's column with --id-column"))
    if problems:
        raise ManifestError(problems)


def validate_manifest(path: str | Path, *, columns: ColumnMap = ColumnMap(), require_audio: bool = True) -> list[Problem]:
    """Every problem in a manifest, or an empty list when it is clean."""
    try:
        load_manifest(path, columns=columns, require_audio=require_audio)
    except ManifestError as error:
        return error.problems
    return []


_Record = Record  # rows as read, before validation


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_parquet(path: Path) -> list[_Record]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    # Row numbers are 1-based data rows; Parquet has no text lines.
    return [_Record(index, row) for index, row in enumerate(table.to_pylist(), start=1)]


def _read_hf_dataset(source: str, target: str, *, split: str | None, from_disk: bool) -> tuple[list[_Record], str, str]:
    """A folder written by save_to_disk (from_disk) or, only when asked for with hf://, a Hub dataset."""
    if from_disk:
        folder = Path(target)
        if not any((folder / name).exists() for name in SAVED_DATASET_MARKERS):
            raise ManifestError([_not_a_dataset(source, folder)])
    try:
        import datasets
    except ImportError as exc:
        raise ManifestError([Problem(file=source, line=None, field=None, value=None, message="reading a Hugging Face dataset needs the `datasets` package", fix="Install it with `pip install 'asrfair[hf]'`")]) from exc
    try:
        dataset = datasets.load_from_disk(target) if from_disk else datasets.load_dataset(target, split=split)
    except Exception as exc:  # datasets raises many unrelated types for "not found"
        fix = ("The folder looks like a save_to_disk dataset but cannot be read: save it again with save_to_disk" if from_disk
               else f"Check the Hub id (owner/name) and that this machine can reach the Hub or has the dataset in its cache; a local folder needs no {HF_PREFIX}")
        raise ManifestError([Problem(file=source, line=None, field=None, value=None, message=f"cannot open Hugging Face dataset ({type(exc).__name__}: {exc})", fix=fix)]) from exc
    if isinstance(dataset, datasets.DatasetDict):
        chosen = split or ("test" if "test" in dataset else next(iter(dataset)))
        dataset = dataset[chosen]
    for name, feature in dataset.features.items():
        # Decoding through datasets needs torchcodec; we decode the bytes ourselves instead.
        if isinstance(feature, datasets.Audio):
            dataset = dataset.cast_column(name, datasets.Audio(decode=False))
    records = [_Record(index, row) for index, row in enumerate(dataset, start=1)]
    return records, "huggingface", dataset._fingerprint


def _not_a_dataset(source: str, folder: Path) -> Problem:
    """A folder that save_to_disk did not write: name the manifests inside it, which is usually what was meant."""
    suffixes = (*JSON_SUFFIXES, *TABLE_SUFFIXES, *PARQUET_SUFFIXES)
    manifests = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if manifests:
        hint = f"Give the manifest file itself, e.g. {', '.join(repr(str(p)) for p in manifests[:3])}"
    else:
        hint = f"Give a manifest file. {FORMATS_HELP}"
    return Problem(file=source, line=None, field=None, value=None,
                   message=f"is a folder but not a Hugging Face dataset saved with save_to_disk (it has none of {', '.join(SAVED_DATASET_MARKERS)})",
                   fix=hint)


def _build_utterances(records: Sequence[_Record], *, source: str, base: Path, columns: ColumnMap, require_audio: bool, integer_tags_ok: bool) -> tuple[list[Utterance], list[Problem]]:
    problems: list[Problem] = []
    utterances: list[Utterance] = []
    first_line_of: dict[str, int] = {}

    def problem(line: int | None, field_name: str | None, value: object, message: str, fix: str) -> None:
        problems.append(Problem(file=source, line=line, field=field_name, value=value, message=message, fix=fix))

    for record in records:
        if record.fields is None:
            problem(record.line, None, record.raw, record.parse_error or "unreadable line", record.fix or "Fix the line, or delete it")
            continue
        fields = dict(record.fields)
        audio_key = columns.audio if columns.audio in fields or NEMO_AUDIO_KEY not in fields else NEMO_AUDIO_KEY
        raw_audio = fields.get(audio_key)
        utterance_id = fields.get(columns.id)
        segment = _segment(fields)
        if utterance_id is None or utterance_id == "":
            if isinstance(raw_audio, str) and raw_audio:
                # NeMo manifests carry no id; the audio path (without suffix) is unique within a corpus, and
                # with the offset, unique among the segments of one recording.
                utterance_id = str(Path(raw_audio).with_suffix(""))
                if len(segment) == 2 and segment[0] is not None:
                    utterance_id += f"@{segment[0]:g}s"
            else:
                problem(record.line, columns.id, utterance_id, "missing utterance id", f"Add an {columns.id!r} field, or map another column with --id-column")
                continue
        if not isinstance(utterance_id, (str, int)) or isinstance(utterance_id, bool):
            problem(record.line, columns.id, utterance_id, "utterance id must be a string", "Write the id as a JSON string")
            continue
        utterance_id = str(utterance_id)
        if utterance_id in first_line_of:
            problem(record.line, columns.id, utterance_id, f"duplicate id (first seen on line {first_line_of[utterance_id]})", "Give every utterance a unique id")
            continue
        first_line_of[utterance_id] = record.line

        text = fields.get(columns.text)
        if not isinstance(text, str):
            problem(record.line, columns.text, text, "reference transcript is missing or not a string", f"Add the reference as a string in {columns.text!r}, or map another column with --text-column")
            continue
        if not text.strip():
            problem(record.line, columns.text, text, "empty reference transcript", "Fill in what was said, or remove the utterance: WER is undefined without reference words")
            continue

        audio_path: Path | None = None
        audio_bytes: bytes | None = None
        if isinstance(raw_audio, Mapping):  # a Hugging Face Audio(decode=False) cell
            audio_bytes = raw_audio.get("bytes")
            if audio_bytes is None and raw_audio.get("path"):
                audio_path = _resolve(base, raw_audio["path"])
        elif isinstance(raw_audio, str) and raw_audio:
            audio_path = _resolve(base, raw_audio)
        elif raw_audio not in (None, ""):
            problem(record.line, audio_key, raw_audio, "audio must be a file path", "Write the path as a string, relative to the manifest's folder or absolute")
            continue
        if require_audio:
            if audio_path is None and audio_bytes is None:
                problem(record.line, audio_key, raw_audio, "missing audio", f"Add the audio path in {audio_key!r} (or use --backend replay, which needs no audio)")
                continue
            if audio_path is not None and not audio_path.is_file():
                problem(record.line, audio_key, raw_audio, f"audio file not found at {audio_path}", "Check the path; relative paths are resolved against the manifest's folder")
                continue

        speaker = fields.get(columns.speaker)
        if speaker is not None and not isinstance(speaker, (str, int)):
            problem(record.line, columns.speaker, speaker, "speaker id must be a string", "Write the speaker id as a string")
            continue
        speaker = None if speaker in (None, "") else str(speaker)

        tags, tag_problems = _collect_tags(fields, columns=columns, used={columns.id, audio_key, columns.text, columns.speaker}, integer_tags_ok=integer_tags_ok)
        if tag_problems:
            for field_name, value, message, fix in tag_problems:
                problem(record.line, field_name, value, message, fix)
            continue

        if len(segment) == 4:
            problem(record.line, *segment)
            continue
        offset_s, duration_s = segment
        utterances.append(
            Utterance(id=utterance_id, text=text, audio=audio_path, audio_bytes=audio_bytes, speaker=speaker, tags=MappingProxyType(tags),
                      offset_s=offset_s, duration_s=duration_s, source_line=record.line)
        )
    return utterances, problems


def _segment(fields: Mapping[str, Any]) -> tuple[float | None, float | None] | tuple[str, object, str, str]:
    """(offset_s, duration_s) of the part of the audio file this utterance is, as NeMo's `offset` and
    `duration` give it; or (field, value, message, fix) when one is unusable."""
    values: dict[str, float | None] = {}
    for name, keys in (("offset", ("offset", "offset_s")), ("duration", ("duration", "duration_s"))):
        key = next((k for k in keys if k in fields), keys[0])
        raw = fields.get(key)
        if raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, float) and math.isnan(raw)):
            values[name] = None
            continue
        try:
            number = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            return key, raw, f"{name} must be a number of seconds", f"Write it as a number, e.g. \"{key}\": 1.5, or leave it out"
        if name == "offset" and number < 0:
            return key, raw, "offset must not be negative", "Give the start of the utterance in seconds from the start of the file"
        if name == "duration" and number <= 0:
            return key, raw, "duration must be positive", "Give the length of the utterance in seconds, or leave it out to decode to the end of the file"
        values[name] = number
    return values["offset"], values["duration"]


def _resolve(base: Path, raw: str) -> Path:
    candidate = Path(raw).expanduser()
    return candidate if candidate.is_absolute() else (base / candidate)


def _collect_tags(fields: Mapping[str, Any], *, columns: ColumnMap, used: set[str], integer_tags_ok: bool) -> tuple[dict[str, str], list[tuple[str, object, str, str]]]:
    problems: list[tuple[str, object, str, str]] = []
    candidates: dict[str, Any] = {}
    nested = fields.get("tags")
    if nested is not None:
        if not isinstance(nested, Mapping):
            return {}, [("tags", nested, "tags must be an object of name -> string", 'Write tags as {"accent": "...", ...}')]
        candidates.update({f"{key}": value for key, value in nested.items()})
    if columns.tags is not None:
        for name in columns.tags:
            if name in fields:
                candidates[name] = fields[name]
            elif name not in candidates:
                problems.append((name, None, f"tag column {name!r} is missing", "Check --tag-columns against the manifest's columns"))
    else:
        for key, value in fields.items():
            if key not in used and key not in NON_TAG_KEYS and key not in candidates:
                candidates[key] = value
    tags: dict[str, str] = {}
    for name, value in candidates.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, int) and not integer_tags_ok):
            problems.append((f"tags.{name}", value, "tag values must be strings", f'Quote the value, e.g. "{name}": "{value}"'))
            continue
        text = str(value)
        if text in columns.missing_values:
            continue
        tags[name] = text
    return tags, problems


def utterances_table(utterances: Sequence[Utterance]) -> pa.Table:
    """The canonical manifest table of these utterances (tags in order of first appearance)."""
    tag_names: dict[str, None] = {}
    for utterance in utterances:
        tag_names.update(dict.fromkeys(utterance.tags))
    arrays = [
        pa.array([u.id for u in utterances], type=pa.string()),
        pa.array([u.text for u in utterances], type=pa.string()),
        pa.array([None if u.audio is None else str(u.audio) for u in utterances], type=pa.string()),
        pa.array([u.audio_bytes for u in utterances], type=pa.binary()),
        pa.array([u.speaker for u in utterances], type=pa.string()),
        pa.array([u.offset_s for u in utterances], type=pa.float64()),
        pa.array([u.duration_s for u in utterances], type=pa.float64()),
        pa.array([u.source_line for u in utterances], type=pa.int64()),
        *(pa.array([u.tags.get(name) for u in utterances], type=pa.string()) for name in tag_names),
    ]
    schema = pa.schema([*CANONICAL, *((TAG_PREFIX + name, pa.string()) for name in tag_names)])
    return pa.Table.from_arrays(arrays, schema=schema)
