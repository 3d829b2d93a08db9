"""The layout of a run directory and its provenance record, shared by the runner and the reports.

Both sides import this module, so report code never needs the runner to find a run's files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

RUN_FILE = "run.json"  # provenance: manifest, backend, normaliser, seed, conditions, sessions
RESULTS_FILE = "results.sqlite"  # the result store's ledger: which parts and keys are committed (harness.store)
PARTS_DIR = "results.parts"  # the result store's rows, one Arrow file per committed group
EXPORT_FILE = "utterances.parquet"  # the same rows, exported when a run completes
LOCK_FILE = ".lock"
CLEAN = "clean"  # the condition key of the unaltered audio


def run_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / RUN_FILE


def read_run_record(path: str | Path) -> dict[str, Any]:
    """A run's provenance record, from its run directory or its run.json.

    A missing, damaged or foreign file is a ConfigError naming it, never a traceback.
    """
    path = Path(path)
    record_file = path if path.name == RUN_FILE or path.is_file() else path / RUN_FILE
    if not record_file.exists():
        raise ConfigError(f"{record_file.parent}: no {RUN_FILE} here. Point at a directory written by `asrfair run` (e.g. reports/<run-id>).")
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{record_file}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}): the run record is damaged (truncated?). "
            "Restore it from a copy, or start the run again in a new --out folder."
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{record_file}: byte {exc.start} is not UTF-8: this is not a run record written by asrfair. Point at a run folder, or restore the file.") from None
    if not isinstance(record, dict) or "manifest" not in record or "backend" not in record:
        raise ConfigError(f"{record_file}: not a run record written by asrfair (no 'manifest' and 'backend' fields). Point at a folder written by `asrfair run`, or restore the file.")
    return record


def write_run_record(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write run.json atomically: a crash never leaves a half-written record."""
    path = run_file(run_dir)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=False, default=str), encoding="utf-8")
    temporary.replace(path)


def lock_run_dir(run_dir: str | Path):
    """Hold an exclusive lock on the run directory: two processes resuming one run would race for rows.

    Returns the open lock file; closing it releases the lock (the OS releases it if the process dies).
    """
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "w")  # noqa: SIM115 - held open for the whole run, closed by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"{run_dir} is in use by another asrfair process. Wait for it to finish (or stop it), then run again with --resume.") from None
    return handle
