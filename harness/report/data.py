"""Loading a run directory into one flat table: a row per (utterance, condition), a column per tag.

Results are read as columns from the run's store (or its utterances.parquet export), never
row by row through SQL; tags are already columns there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError
from harness.rundir import EXPORT_FILE, RUN_FILE, read_run_record
from harness.store import COLUMN_NAMES, RESULTS_FILE, TAG_PREFIX, ResultStore

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# Tag names that would shadow a result column are exposed as "tag.NAME" instead.
RESERVED = frozenset(COLUMN_NAMES) | {"cluster", "tags_json"}
# Every reader needs these: rows are keyed, clustered by speaker, and split by condition and status.
KEY_COLUMNS = ("utterance_id", "condition_key", "condition", "snr_db", "speaker", "status")
# The long text of each row: most of a run's bytes, and no statistic reads them. Loaded on request.
TEXT_COLUMNS = ("reference", "hypothesis", "reference_normalized", "hypothesis_normalized", "noise_json")


@dataclass(frozen=True, kw_only=True)
class RunData:
    """A run's provenance record and its per-utterance results with tags as columns."""

    run_dir: Path
    record: dict[str, Any]
    frame: pd.DataFrame
    tag_columns: tuple[str, ...]


def load_run(run_dir: str | Path, *, texts: bool = True, columns: Sequence[str] | None = None, tags: bool = True) -> RunData:
    """A run's record and results. `texts=False` leaves out TEXT_COLUMNS (transcripts, noise records),
    most of the time and memory of loading a large run, which statistics never read. `columns` keeps
    only those result columns, besides KEY_COLUMNS and the tags that every reader needs (each string
    column of a million rows costs tens of milliseconds and megabytes to load). `tags=False` leaves
    the tags out too (a run compared against another is sliced by the other's tags)."""
    run_dir = Path(run_dir)
    run_file = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such folder. Point at a folder written by `asrfair run` (e.g. reports/<run-id>).")
    if not run_file.exists():
        raise ConfigError(f"{run_dir}: no {RUN_FILE} here, so this folder holds no run. Point at a folder written by `asrfair run` (e.g. reports/<run-id>).")
    record = read_run_record(run_file)
    frame, tag_columns = flatten_tags(read_results(run_dir, texts=texts, columns=columns, tags=tags))
    return RunData(run_dir=run_dir, record=record, frame=frame, tag_columns=tag_columns)


def read_results(run_dir: str | Path, *, texts: bool = True, columns: Sequence[str] | None = None, tags: bool = True) -> pa.Table | pd.DataFrame:
    """A run's result rows: an Arrow table from the store's parts or the export (a frame for old runs)."""
    run_dir = Path(run_dir)

    def wanted(names: Sequence[str]) -> list[str] | None:
        if texts and columns is None and tags:
            return None
        keep = None if columns is None else {*columns, *KEY_COLUMNS}
        return [
            name for name in names
            if (texts or name not in TEXT_COLUMNS) and (tags or not _is_tag(name)) and (keep is None or name in keep or _is_tag(name))
        ]

    if (run_dir / RESULTS_FILE).exists():
        with ResultStore(run_dir / RESULTS_FILE, readonly=True) as store:
            if not store.legacy:
                return store.read_table(columns=wanted(store.schema.names))
            return _legacy_frame(store)
    if (run_dir / EXPORT_FILE).exists():
        import pyarrow.parquet as pq  # only for runs without a store: a report of a stored run never needs it

        return pq.read_table(run_dir / EXPORT_FILE, columns=wanted(pq.read_schema(run_dir / EXPORT_FILE).names))
    raise ConfigError(f"{run_dir}: no results ({RESULTS_FILE} or {EXPORT_FILE}). Run `asrfair run ... --out {run_dir} --resume` to produce them.")


def _is_tag(name: str) -> bool:
    return name.startswith(TAG_PREFIX) or name == "tags_json"  # tags_json: runs from before tags were columns


def flatten_tags(results: pa.Table | pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Name the tag columns for slicing and add `cluster`: the speaker, or the utterance when unknown.

    Stored tag columns are "tag.NAME"; each is exposed as NAME unless that would shadow a result
    column. Results from before tags were columns carry them as JSON in `tags_json`.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(results, pd.DataFrame):
        results = _from_legacy_frame(results)
    renames, columns = {}, []
    # Alphabetical, as before tags were columns: the order does not depend on which rows came first.
    for name in sorted(results.column_names):
        if name.startswith(TAG_PREFIX):
            tag = name[len(TAG_PREFIX) :]
            renames[name] = name if tag in RESERVED else tag
            columns.append(renames[name])
    speaker = results.column("speaker").cast(pa.string())
    utterance = pc.binary_join_element_wise("utt:", results.column("utterance_id").cast(pa.string()), "")
    known = pc.and_(pc.is_valid(speaker), pc.not_equal(speaker, "")).fill_null(False)
    results = results.rename_columns([renames.get(name, name) for name in results.column_names])
    results = results.append_column("cluster", pc.if_else(known, speaker, utterance))
    frame = results.to_pandas()
    for name in columns:
        frame[name] = frame[name].astype("string")
    return frame, tuple(columns)


def _from_legacy_frame(frame: pd.DataFrame) -> pa.Table:
    """A results frame with tags as JSON text (`tags_json`) as a table with "tag.NAME" columns."""
    import pyarrow as pa

    parsed = [json.loads(text) if isinstance(text, str) and text else {} for text in frame["tags_json"]] if "tags_json" in frame else [{}] * len(frame)
    names: dict[str, None] = {}
    for tags in parsed:
        names.update(dict.fromkeys(tags))
    table = pa.Table.from_pandas(frame.drop(columns=[c for c in ("tags_json",) if c in frame]), preserve_index=False)
    for name in names:
        table = table.append_column(TAG_PREFIX + name, pa.array([tags.get(name) for tags in parsed], type=pa.string()))
    return table


def _legacy_frame(store: ResultStore) -> pd.DataFrame:
    """Results of a run made before the Parquet store: one SQLite row per result."""
    import pandas as pd

    return pd.read_sql_query("SELECT * FROM results ORDER BY rowid", store._connection)


def condition_keys(frame: pd.DataFrame) -> list[str]:
    """The run's condition keys in order of first appearance (a hash-based unique, not a row-by-row loop:
    a million rows take milliseconds)."""
    import pandas as pd

    return [str(key) for key in pd.unique(frame["condition_key"])]


def check_dimensions(data: RunData, by: list[str]) -> None:
    """Every --by must name a tag or a result column that slices (condition, snr_db, speaker)."""
    sliceable = set(data.tag_columns) | {"condition", "condition_key", "snr_db", "speaker"}
    for name in by:
        if name not in sliceable:
            available = ", ".join(sorted(sliceable))
            raise ConfigError(f"--by {name!r}: no such tag in {data.run_dir}. Available: {available}.")


def completeness(record: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    """How much of the run exists: expected = manifest utterances x conditions, against the rows stored.

    A run is complete only when it finished (status "complete") and every expected row is there; an
    interrupted run, or one killed while "running", is reported with its counts by every output.
    """
    n_utterances = (record.get("manifest") or {}).get("n_utterances")
    n_conditions = len(record.get("conditions") or []) or 1
    expected = n_utterances * n_conditions if isinstance(n_utterances, int) else None
    transcribed = int(len(frame))
    status = record.get("status")
    return {
        "complete": status == "complete" and (expected is None or transcribed >= expected),
        "status": status,
        "expected": expected,
        "transcribed": transcribed,
        "missing": None if expected is None else max(expected - transcribed, 0),
        "failed": int((frame["status"] != "ok").sum()) if "status" in frame else 0,
    }


def incomplete_notice(run: Mapping[str, Any]) -> str | None:
    """One sentence for every output of an incomplete run (None when complete): what is missing, and the fix."""
    counts = run.get("completeness") or {}
    if not counts or counts.get("complete"):
        return None
    expected = counts.get("expected")
    of = f" of {expected}" if expected is not None else ""
    missing = f", {counts['missing']} not transcribed yet" if counts.get("missing") else ""
    return (
        f"Incomplete run (status {counts.get('status')}): {counts.get('transcribed')}{of} utterance-conditions transcribed{missing}; "
        f"the figures cover only those. Finish it with the same `asrfair run` command plus --resume --out {run.get('run_dir')}."
    )
