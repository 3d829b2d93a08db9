"""Re-score a finished run's stored hypotheses with another normaliser, without transcribing anything again.

The new run directory holds the same rows with new counts, and a run record that says where they
came from; reports, slices, compare and card read it like any run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.normalize import get_normalizer, normalizer_version
from harness.rundir import EXPORT_FILE, RESULTS_FILE, lock_run_dir, read_run_record, run_file, write_run_record
from harness.scoring import score_many
from harness.store import ResultStore


@dataclass(frozen=True, kw_only=True)
class RescoreSummary:
    out_dir: Path
    n_rows: int
    n_rescored: int  # rows with a hypothesis; failed rows are copied as they are
    wer_before: float | None
    wer_after: float | None


def rescore_run(run_dir: str | Path, *, normalizer: str, out_dir: str | Path) -> RescoreSummary:
    """Write `out_dir`: `run_dir`'s rows re-scored with `normalizer`, and its run record with the new normaliser."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    record = read_run_record(run_dir)
    normalize = get_normalizer(normalizer)
    if out_dir.resolve() == run_dir.resolve():
        raise ConfigError(f"--out {out_dir} is the run being re-scored. Give a new directory; the original stays as it was.")
    if run_file(out_dir).exists():
        raise ConfigError(f"{out_dir} already holds a run. Choose a new --out directory.")
    if record.get("status") != "complete":
        raise ConfigError(f"{run_dir}: the run is {record.get('status')!r}, not complete. Finish it with `asrfair run ... --resume --out {run_dir}` first.")
    frame = _rows(run_dir)
    ok = frame["status"] == "ok"
    before = _pooled(frame[ok])
    scores = score_many(frame.loc[ok, "reference"].fillna("").tolist(), frame.loc[ok, "hypothesis"].fillna("").tolist(), normalize)
    rows: list[dict[str, Any]] = []
    scored = iter(scores)
    for row, is_ok in zip(frame.to_dict("records"), ok, strict=True):
        row = {key: (None if _missing(value) else value) for key, value in row.items()}
        if is_ok:
            row.update(next(scored).as_dict())
        rows.append(row)
    lock = lock_run_dir(out_dir)
    try:
        with ResultStore(out_dir / RESULTS_FILE, schema=_schema(run_dir)) as store:
            store.write_batch(rows)
            store.to_frame().to_parquet(out_dir / EXPORT_FILE, index=False)
            after = _pooled(store.to_frame().query("status == 'ok'"))
        new_record = {
            **record,
            "normalizer": {"name": normalizer, "implementation": normalizer_version(normalizer)},
            "rescored_from": {"run_dir": str(run_dir.resolve()), "normalizer": record.get("normalizer"), "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        }
        write_run_record(out_dir, new_record)
    finally:
        lock.close()
    return RescoreSummary(out_dir=out_dir, n_rows=len(rows), n_rescored=int(ok.sum()), wer_before=before, wer_after=after)


def _schema(run_dir: Path) -> Any:
    """The source run's result columns (its tags among them), so the re-scored run keeps every one."""
    if (run_dir / RESULTS_FILE).exists():
        with ResultStore(run_dir / RESULTS_FILE, readonly=True) as store:
            return store.schema
    return None


def _rows(run_dir: Path) -> pd.DataFrame:
    if (run_dir / RESULTS_FILE).exists():
        with ResultStore(run_dir / RESULTS_FILE, readonly=True) as store:
            return store.to_frame()
    if (run_dir / EXPORT_FILE).exists():
        return pd.read_parquet(run_dir / EXPORT_FILE)
    raise ConfigError(f"{run_dir}: no results ({RESULTS_FILE} or {EXPORT_FILE}) to re-score.")


def _pooled(ok: pd.DataFrame) -> float | None:
    words = int(ok["ref_words"].sum())
    return int(ok["errors"].sum()) / words if words else None


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and dicts are never missing
        return False
