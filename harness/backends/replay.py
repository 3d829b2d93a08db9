"""Replay hypotheses produced elsewhere (a cloud API's output, another toolkit's decode) from a file."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from harness.backends.base import Backend, BackendOption, Transcript, TranscriptionRequest
from harness.errors import BackendError
from harness.records import DEFAULT_ENCODING, JSON_SUFFIXES, read_delimited_records, read_json_records

MATCH_MODES = ("exact", "stem")
NO_HYPOTHESIS = "no hypothesis in the replay file; scored as an empty transcript"


@dataclass(frozen=True, kw_only=True)
class ReplayCoverage:
    """How the replay file's ids line up with the manifest's."""

    n_manifest: int
    n_matched: int
    missing_examples: tuple[str, ...]  # manifest ids with no hypothesis: scored as empty transcripts
    n_unused: int  # hypothesis ids that match no manifest utterance
    unused_examples: tuple[str, ...]

    @property
    def n_missing(self) -> int:
        return self.n_manifest - self.n_matched


class ReplayBackend(Backend):
    """Looks up each utterance's hypothesis by id; needs no audio.

    `match="stem"` compares ids with any file extension removed, for files keyed by audio file
    name whose extension changed between pipelines (clip.mp3 in the corpus, clip.wav in the outputs).
    A manifest utterance with no hypothesis is transcribed as "" (all deletions), never dropped.
    """

    name = "replay"
    sample_rate_hz = None
    summary = "Hypotheses produced elsewhere (cloud APIs, other toolkits), read from TSV/CSV/JSONL by utterance id."
    options = (
        BackendOption(name="hypotheses", help="the file of hypotheses (.tsv, .csv or .jsonl)"),
        BackendOption(name="id_column", default="id", help="field holding the utterance id"),
        BackendOption(name="hypothesis_column", default="hypothesis", help="field holding the transcript"),
        BackendOption(name="match", default="exact", help="exact, or stem to ignore file extensions in ids"),
        BackendOption(name="encoding", default=DEFAULT_ENCODING, help="text encoding of the file (e.g. utf-8, utf-16, cp1252)"),
    )

    def __init__(self, hypotheses: str, id_column: str = "id", hypothesis_column: str = "hypothesis", match: str = "exact", encoding: str = DEFAULT_ENCODING):
        if match not in MATCH_MODES:
            raise BackendError(f"replay: match={match!r} is not one of {', '.join(MATCH_MODES)}. Use match=stem to ignore file extensions in ids.")
        self.path = Path(hypotheses)
        self.id_column = id_column
        self.hypothesis_column = hypothesis_column
        self.match = match
        self.encoding = encoding
        pairs = _read_hypotheses_in_bulk(self.path, id_column, hypothesis_column, encoding) or _read_hypotheses(self.path, id_column, hypothesis_column, encoding)
        self._by_key = dict(pairs) if match == "exact" else {self._key(i): text for i, text in pairs}
        self._sha256 = _sha256(self.path)
        self.coverage: ReplayCoverage | None = None

    def _key(self, utterance_id: str) -> str:
        if self.match == "stem":
            pure = PurePosixPath(utterance_id)
            return str(pure.with_suffix("")) if pure.suffix else utterance_id
        return utterance_id

    def prepare(self, utterance_ids: Iterable[str]) -> ReplayCoverage:
        """Check coverage against the manifest before any work; stop if nothing matches at all."""
        ids = list(utterance_ids)
        key = self._key if self.match != "exact" else str
        keys = set(map(key, ids))
        by_key = self._by_key
        missing = [i for i in ids if key(i) not in by_key]
        unused = [k for k in self._by_key if k not in keys]
        if ids and len(missing) == len(ids):
            raise BackendError(
                f"replay: none of the {len(ids)} manifest ids matches an id in {self.path} (column {self.id_column!r}). "
                f"Manifest ids look like {ids[:3]}; hypothesis ids look like {list(self._by_key)[:3]}. "
                "Map the right columns (--backend-arg id_column=..., hypothesis_column=...) or try --backend-arg match=stem."
            )
        self.coverage = ReplayCoverage(
            n_manifest=len(ids), n_matched=len(ids) - len(missing), missing_examples=tuple(missing[:5]),
            n_unused=len(unused), unused_examples=tuple(unused[:5]),
        )
        return self.coverage

    def transcribe(self, batch: list[TranscriptionRequest]) -> list[Transcript]:
        get = self._by_key.get
        key = self._key if self.match != "exact" else None  # exact ids, the common case, spared a call each
        missing = Transcript(text="", note=NO_HYPOTHESIS)  # immutable, so shared by every missing id
        results = []
        for request in batch:
            text = get(request.utterance_id if key is None else key(request.utterance_id))
            results.append(Transcript(text=text) if text is not None else missing)
        return results

    def notes(self) -> list[str]:
        coverage = self.coverage
        if coverage is None or not (coverage.n_missing or coverage.n_unused):
            return []
        return [
            f"replay: {coverage.n_missing} of {coverage.n_manifest} manifest utterances have no hypothesis and were scored as empty transcripts "
            f"(e.g. {list(coverage.missing_examples)}); {coverage.n_unused} hypotheses match no manifest utterance (e.g. {list(coverage.unused_examples)})."
        ]

    def identity(self) -> dict[str, Any]:
        # Coverage depends on the manifest, not on the transcripts a replay gives.
        return {"name": self.name, "hypotheses_sha256": self._sha256, "id_column": self.id_column, "hypothesis_column": self.hypothesis_column, "match": self.match}

    def describe(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "hypotheses": str(self.path.resolve()), "hypotheses_sha256": self._sha256,
            "id_column": self.id_column, "hypothesis_column": self.hypothesis_column, "match": self.match, "encoding": self.encoding,
        }
        if self.coverage is not None:
            record["coverage"] = {
                "matched": self.coverage.n_matched, "missing": self.coverage.n_missing,
                "missing_examples": list(self.coverage.missing_examples),
                "unused": self.coverage.n_unused, "unused_examples": list(self.coverage.unused_examples),
            }
        return record


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _read_hypotheses_in_bulk(path: Path, id_column: str, hypothesis_column: str, encoding: str = DEFAULT_ENCODING) -> Iterable[tuple[str, str]] | None:
    """The (id, hypothesis) pairs of a clean UTF-8 file read by pyarrow, or None to read it line by line.

    None whenever the line-by-line reader might see something else or have a problem to report
    (another encoding, a JSON array, a repeated id, a missing field or column, a value on several
    lines), so its messages keep their line numbers.
    """
    import codecs

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.lib

    from harness.records import sniff_delimiter

    suffix = path.suffix.lower()
    try:
        if not path.is_file() or codecs.lookup(encoding).name != "utf-8":
            return None
        with path.open("rb") as handle:
            if handle.read(3) == codecs.BOM_UTF8:
                return None
        if suffix in JSON_SUFFIXES:
            import pyarrow.json as pj

            table, header_lines = pj.read_json(path), 0
        elif suffix in (".tsv", ".csv", ".tab", ".txt"):
            import pyarrow.csv as pcsv

            with path.open(encoding="utf-8", newline="") as handle:
                first = handle.readline()
            # As harness.records reads a table: the delimiter its header holds, quotes literal in tab-separated text.
            delimiter = sniff_delimiter(first, "," if suffix == ".csv" else "\t")
            header = next(csv.reader([first], delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL), None)
            if not header or len(set(header)) != len(header) or id_column not in header or hypothesis_column not in header:
                return None
            table = pcsv.read_csv(
                path,
                parse_options=pcsv.ParseOptions(delimiter=delimiter, quote_char=False if delimiter == "\t" else '"'),
                convert_options=pcsv.ConvertOptions(column_types={name: pa.string() for name in header}, strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
            header_lines = 1
        else:
            return None
        table.validate(full=True)  # the JSON reader does not check that strings are UTF-8
    except (pyarrow.lib.ArrowException, UnicodeDecodeError, LookupError, OSError):
        return None
    lines = 0
    with path.open("rb") as handle:
        last = b"\n"
        while block := handle.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    if lines + (last != b"\n") != table.num_rows + header_lines or id_column not in table.column_names or hypothesis_column not in table.column_names:
        return None
    ids, texts = table.column(id_column), table.column(hypothesis_column)
    if not (pa.types.is_string(ids.type) or pa.types.is_integer(ids.type)) or ids.null_count or pc.count_distinct(ids).as_py() != len(ids):
        return None
    # A JSON line without the field is an error and one with null is "", which a column cannot tell
    # apart; and str() of a number is Python's to write.
    if not pa.types.is_string(texts.type) or texts.null_count:
        return None
    id_values, text_values = ids.cast(pa.string()).to_pylist(), texts.to_pylist()
    del table, ids, texts
    pa.default_memory_pool().release_unused()  # the reader's buffers, no longer needed
    return zip(id_values, text_values)


def _read_hypotheses(path: Path, id_column: str, hypothesis_column: str, encoding: str = DEFAULT_ENCODING) -> list[tuple[str, str]]:
    if not path.is_file():
        raise BackendError(f"replay: hypotheses file {path} not found. Pass it as --backend-arg hypotheses=PATH.")
    suffix = path.suffix.lower()
    option = "--backend-arg encoding="
    if suffix in JSON_SUFFIXES:
        records = read_json_records(path, encoding=encoding, option=option)
        header = None
    elif suffix in (".tsv", ".csv", ".tab", ".txt"):
        table = read_delimited_records(path, delimiter="," if suffix == ".csv" else "\t", encoding=encoding, option=option)
        records, header = table.records, table.header
        for column, option_name in ((id_column, "id_column"), (hypothesis_column, "hypothesis_column")):
            if column not in header:
                raise BackendError(f"{path}:1: no column {column!r}; the header has {header} (read as {table.delimiter_name}-separated). "
                                   f"Name the right one with --backend-arg {option_name}=....")
    else:
        raise BackendError(f"replay: {path} has unknown format {path.suffix!r}. Use .tsv, .tab, .txt (tab-separated), .csv, or .jsonl/.json/.ndjson (JSON lines or a JSON array).")
    pairs: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for record in records:
        line_number, row = record.line, record.fields
        if row is None:
            raise BackendError(f"{path}:{line_number}: {record.parse_error}. {record.fix or 'Fix or delete the line'}.")
        for column, option_name in ((id_column, "id_column"), (hypothesis_column, "hypothesis_column")):
            if column not in row:
                # A JSON line without the field would replay as "" (every word a deletion) while coverage said it matched.
                raise BackendError(f"{path}:{line_number}: field {column!r} missing (the line has {sorted(row)}). "
                                   f"Name the field with --backend-arg {option_name}=..., or add it (an empty string for an empty transcript).")
        utterance_id = str(row[id_column])
        if utterance_id in seen:
            raise BackendError(f"{path}:{line_number}: field {id_column!r} value {utterance_id!r} repeats line {seen[utterance_id]}. Keep one hypothesis per id.")
        seen[utterance_id] = line_number
        text = row.get(hypothesis_column)
        if text is not None and not isinstance(text, (str, int, float)):
            raise BackendError(f"{path}:{line_number}: field {hypothesis_column!r} value {text!r} is not text. Write the hypothesis as a string.")
        pairs.append((utterance_id, "" if text is None else str(text)))
    return pairs
