"""Utterances and the manifests that list them: loading from JSONL, CSV/TSV, Parquet or a
Hugging Face dataset, mapping columns, and validating everything in one pass."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.errors import ManifestError, Problem

# Keys that describe the utterance itself rather than a slice it belongs to.
NEMO_AUDIO_KEY = "audio_filepath"
NON_TAG_KEYS = frozenset({"duration", "offset", "duration_s", "tags", "pred_text", "audio_filepath", "lang"})
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


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
    duration_s: float | None = None
    source_line: int | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None or self.audio_bytes is not None


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """An ordered, validated collection of utterances and the fingerprint of where they came from."""

    source: str
    sha256: str
    format: str
    utterances: tuple[Utterance, ...]

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    @property
    def tag_names(self) -> list[str]:
        names: dict[str, None] = {}
        for utterance in self.utterances:
            names.update(dict.fromkeys(utterance.tags))
        return list(names)

    def by_id(self) -> dict[str, Utterance]:
        return {u.id: u for u in self.utterances}

    @classmethod
    def from_file(cls, path: str | Path, *, columns: ColumnMap = ColumnMap(), require_audio: bool = True) -> Manifest:
        return load_manifest(path, columns=columns, require_audio=require_audio)


def load_manifest(path: str | Path, *, columns: ColumnMap = ColumnMap(), require_audio: bool = True, split: str | None = None) -> Manifest:
    """Load and validate a manifest. Every problem is collected into one ManifestError.

    `require_audio=False` (the replay backend) accepts utterances without audio and does not
    check that audio files exist.
    """
    source = str(path)
    path = Path(path)
    looks_like_hub_id = not path.exists() and path.suffix == "" and source.count("/") == 1 and not source.startswith((".", "/", "~"))
    if path.is_dir() or looks_like_hub_id:
        records, fmt, sha256 = _read_hf_dataset(source, split=split)
        base = path if path.is_dir() else Path.cwd()
    elif not path.exists():
        raise ManifestError([Problem(file=source, line=None, field=None, value=None, message="manifest file not found", fix="Check the path; formats accepted are .jsonl, .json, .csv, .tsv, .parquet or a Hugging Face dataset directory")])
    else:
        sha256 = _sha256_file(path)
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            records, fmt = _read_jsonl(path), "jsonl"
        elif suffix in TABLE_SUFFIXES:
            records, fmt = _read_delimited(path, TABLE_SUFFIXES[suffix]), suffix.lstrip(".")
        elif suffix in (".parquet", ".pq"):
            records, fmt = _read_parquet(path), "parquet"
        else:
            raise ManifestError([Problem(file=source, line=None, field=None, value=path.suffix, message="unknown manifest format", fix="Use .jsonl, .csv, .tsv or .parquet, or point at a Hugging Face dataset directory")])
        base = path.parent
    # JSON says what it means by type, so a number where a tag belongs is a mistake to report;
    # typed tables (Parquet, datasets) legitimately store integer tags such as age.
    utterances, problems = _build_utterances(records, source=source, base=base, columns=columns, require_audio=require_audio, integer_tags_ok=fmt != "jsonl")
    if problems:
        raise ManifestError(problems)
    return Manifest(source=source, sha256=sha256, format=fmt, utterances=tuple(utterances))


def validate_manifest(path: str | Path, *, columns: ColumnMap = ColumnMap(), require_audio: bool = True) -> list[Problem]:
    """Every problem in a manifest, or an empty list when it is clean."""
    try:
        load_manifest(path, columns=columns, require_audio=require_audio)
    except ManifestError as error:
        return error.problems
    return []


# A raw record is (line number or row index, mapping of field -> value) or an unparsable line.
@dataclass(frozen=True)
class _Record:
    line: int
    fields: Mapping[str, Any] | None
    parse_error: str | None = None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_jsonl(path: Path) -> list[_Record]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                records.append(_Record(line_number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"))
                continue
            if not isinstance(value, dict):
                records.append(_Record(line_number, None, f"expected a JSON object, got {type(value).__name__}"))
                continue
            records.append(_Record(line_number, value))
    return records


def _read_delimited(path: Path, delimiter: str) -> list[_Record]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
        # Line numbers count the header as line 1, matching what an editor shows.
        return [_Record(reader.line_num, dict(row)) for row in reader]


def _read_parquet(path: Path) -> list[_Record]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    # Row numbers are 1-based data rows; Parquet has no text lines.
    return [_Record(index, row) for index, row in enumerate(table.to_pylist(), start=1)]


def _read_hf_dataset(source: str, *, split: str | None) -> tuple[list[_Record], str, str]:
    try:
        import datasets
    except ImportError as exc:
        raise ManifestError([Problem(file=source, line=None, field=None, value=None, message="reading a Hugging Face dataset needs the `datasets` package", fix="Install it with `pip install 'asrfair[hf]'`")]) from exc
    path = Path(source)
    try:
        saved_to_disk = path.is_dir() and any((path / name).exists() for name in ("dataset_dict.json", "dataset_info.json", "state.json"))
        if saved_to_disk:
            dataset = datasets.load_from_disk(source)
        else:
            dataset = datasets.load_dataset(source, split=split)
    except Exception as exc:  # datasets raises many unrelated types for "not found"
        raise ManifestError([Problem(file=source, line=None, field=None, value=None, message=f"cannot open Hugging Face dataset ({type(exc).__name__}: {exc})", fix="Give a local dataset directory (saved with save_to_disk) or a hub id reachable from this machine")]) from exc
    if isinstance(dataset, datasets.DatasetDict):
        chosen = split or ("test" if "test" in dataset else next(iter(dataset)))
        dataset = dataset[chosen]
    for name, feature in dataset.features.items():
        # Decoding through datasets needs torchcodec; we decode the bytes ourselves instead.
        if isinstance(feature, datasets.Audio):
            dataset = dataset.cast_column(name, datasets.Audio(decode=False))
    records = [_Record(index, row) for index, row in enumerate(dataset, start=1)]
    return records, "huggingface", dataset._fingerprint


def _build_utterances(records: Sequence[_Record], *, source: str, base: Path, columns: ColumnMap, require_audio: bool, integer_tags_ok: bool) -> tuple[list[Utterance], list[Problem]]:
    problems: list[Problem] = []
    utterances: list[Utterance] = []
    first_line_of: dict[str, int] = {}

    def problem(line: int | None, field_name: str | None, value: object, message: str, fix: str) -> None:
        problems.append(Problem(file=source, line=line, field=field_name, value=value, message=message, fix=fix))

    for record in records:
        if record.fields is None:
            problem(record.line, None, None, f"unparsable line: {record.parse_error}", "Fix the line so it is one JSON object, or delete it")
            continue
        fields = dict(record.fields)
        audio_key = columns.audio if columns.audio in fields or NEMO_AUDIO_KEY not in fields else NEMO_AUDIO_KEY
        raw_audio = fields.get(audio_key)
        utterance_id = fields.get(columns.id)
        if utterance_id is None or utterance_id == "":
            if isinstance(raw_audio, str) and raw_audio:
                # NeMo manifests carry no id; the audio path (without suffix) is unique within a corpus.
                utterance_id = str(Path(raw_audio).with_suffix(""))
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

        duration = fields.get("duration", fields.get("duration_s"))
        duration_s = float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else None
        utterances.append(
            Utterance(id=utterance_id, text=text, audio=audio_path, audio_bytes=audio_bytes, speaker=speaker, tags=MappingProxyType(tags), duration_s=duration_s, source_line=record.line)
        )
    return utterances, problems


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
