"""Loading a run directory into one flat table: a row per (utterance, condition), a column per tag."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.rundir import EXPORT_FILE, RUN_FILE, read_run_record
from harness.store import COLUMN_NAMES, RESULTS_FILE, ResultStore

# Tag names that would shadow a result column are exposed as "tag.NAME" instead.
RESERVED = frozenset(COLUMN_NAMES) | {"cluster"}


@dataclass(frozen=True, kw_only=True)
class RunData:
    """A run's provenance record and its per-utterance results with tags as columns."""

    run_dir: Path
    record: dict[str, Any]
    frame: pd.DataFrame
    tag_columns: tuple[str, ...]


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    run_file = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such folder. Point at a folder written by `asrfair run` (e.g. reports/<run-id>).")
    if not run_file.exists():
        raise ConfigError(f"{run_dir}: no {RUN_FILE} here, so this folder holds no run. Point at a folder written by `asrfair run` (e.g. reports/<run-id>).")
    record = read_run_record(run_file)
    if (run_dir / RESULTS_FILE).exists():
        with ResultStore(run_dir / RESULTS_FILE) as store:
            frame = store.to_frame()
    elif (run_dir / EXPORT_FILE).exists():
        frame = pd.read_parquet(run_dir / EXPORT_FILE)
    else:
        raise ConfigError(f"{run_dir}: no results ({RESULTS_FILE} or {EXPORT_FILE}). Run `asrfair run ... --out {run_dir} --resume` to produce them.")
    frame, tags = flatten_tags(frame)
    return RunData(run_dir=run_dir, record=record, frame=frame, tag_columns=tags)


def flatten_tags(frame: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Spread the tags JSON into columns and add `cluster`: the speaker, or the utterance when unknown."""
    parsed = [json.loads(text) if isinstance(text, str) and text else {} for text in frame["tags_json"]]
    names: dict[str, None] = {}
    for tags in parsed:
        names.update(dict.fromkeys(tags))
    frame = frame.copy()
    columns = []
    for name in names:
        column = f"tag.{name}" if name in RESERVED else name
        frame[column] = pd.array([tags.get(name) for tags in parsed], dtype="string")
        columns.append(column)
    speaker = frame["speaker"].astype("string")
    frame["cluster"] = speaker.where(speaker.notna() & (speaker != ""), "utt:" + frame["utterance_id"].astype("string"))
    return frame, tuple(columns)


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
