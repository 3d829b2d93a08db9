"""The durable per-utterance result store of a run: columnar parts, committed through a SQLite ledger.

Rows are buffered and committed in groups, by count and by time. A commit writes one part (an Arrow
IPC file: written and read back at memory speed), fsyncs it, then records the part and its keys in
one SQLite transaction (WAL, synchronous=NORMAL).
That transaction is the commit point: a run killed at any moment (kill -9 included) resumes with
every committed row exactly once, and a part that never reached the ledger is deleted unread.
(utterance_id, condition_key) is the ledger's primary key, so a row can never be stored twice.
Readers get one Arrow table from the parts; no row is ever read back through SQL. When a run is
complete its rows are also written to one compressed Parquet file, the run's export.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from harness.errors import ConfigError, HarnessError
# Tags are columns named "tag.<name>", in a manifest's table and in the results alike (a unit's tag
# columns become result columns as they are): one prefix, the manifest table's.
from harness.manifest_table import TAG_PREFIX
from harness.rundir import PARTS_DIR, RESULTS_FILE  # noqa: F401 - the run directory module owns file names; re-exported here

if TYPE_CHECKING:
    import pandas as pd

# SQLite's names for "this file is not a database" and "its pages are damaged".
DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT")
ARROW_SUFFIX = ".arrow"  # parts; a part named .parquet (written by hand, say) is read too

# (column, Arrow type). Noise provenance stays JSON text: it is nested, varies per profile and is
# read by people, never sliced on.
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("utterance_id", pa.string()),
    ("condition_key", pa.string()),
    ("condition", pa.string()),
    ("snr_db", pa.float64()),
    ("speaker", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("reference", pa.string()),
    ("hypothesis", pa.string()),
    ("reference_normalized", pa.string()),
    ("hypothesis_normalized", pa.string()),
    ("ref_words", pa.int64()),
    ("hyp_words", pa.int64()),
    ("hits", pa.int64()),
    ("substitutions", pa.int64()),
    ("deletions", pa.int64()),
    ("insertions", pa.int64()),
    ("errors", pa.int64()),
    ("ref_chars", pa.int64()),
    ("char_errors", pa.int64()),
    ("audio_duration_s", pa.float64()),
    ("noise_json", pa.string()),
    # What the backend measured: the time of the request that answered, requests sent, and for a
    # failed row whether trying again could succeed ("retryable") or not ("permanent").
    ("latency_s", pa.float64()),
    ("attempts", pa.int64()),
    ("failure", pa.string()),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)

# Defaults for grouping commits: a killed run redoes at most this much work.
COMMIT_ROWS = 50_000
COMMIT_INTERVAL_S = 2.0
# More parts than this are merged, so a long run of a slow backend does not leave thousands of files.
MAX_PARTS = 64

DUPLICATE_ROW = "{path}: row ({utterance_id!r}, {condition_key!r}) is already stored. A result is written once; this is a bug in the caller, not in the data."
LEGACY_STORE = "{path} was written by an older asrfair (one SQLite row per result). Reports still read it; to continue the run, start a new --out directory."

_LEDGER = (
    "CREATE TABLE IF NOT EXISTS results (utterance_id TEXT NOT NULL, condition_key TEXT NOT NULL, status TEXT NOT NULL, failure TEXT, part INTEGER NOT NULL, PRIMARY KEY (utterance_id, condition_key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS parts (part INTEGER PRIMARY KEY, file TEXT NOT NULL, n_rows INTEGER NOT NULL)",
    # A row replaced later (a failed utterance tried again) stays in its immutable part file; it is
    # listed here so readers skip it, until compaction drops it for good.
    "CREATE TABLE IF NOT EXISTS superseded (utterance_id TEXT NOT NULL, condition_key TEXT NOT NULL, part INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def result_schema(tag_names: Iterable[str] = ()) -> pa.Schema:
    """The result columns, then one nullable string column per tag."""
    return pa.schema([*COLUMNS, *((TAG_PREFIX + name, pa.string()) for name in tag_names)])


class ResultStore:
    """Append-only results of a run, keyed by (utterance_id, condition_key).

    `append` buffers rows and commits a group once `commit_rows` rows are waiting or
    `commit_interval_s` has passed since the last commit; `flush` (and leaving a `with` block, even
    on an exception) commits what is buffered.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        schema: pa.Schema | None = None,
        commit_rows: int | None = None,
        commit_interval_s: float | None = None,
        max_parts: int | None = None,
        readonly: bool = False,
    ):
        self.path = Path(path)
        self.parts_dir = self.path.parent / PARTS_DIR
        # Read the module's settings now, not at import, so a tool (or a test) can change them.
        self.commit_rows = COMMIT_ROWS if commit_rows is None else commit_rows
        self.commit_interval_s = COMMIT_INTERVAL_S if commit_interval_s is None else commit_interval_s
        self.max_parts = MAX_PARTS if max_parts is None else max_parts
        self.readonly = readonly
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._last_commit = time.monotonic()
        if readonly:
            if not self.path.exists():
                raise ConfigError(f"{self.path}: no such result store.")
            self._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            with self._checked():
                self.legacy = _is_legacy(self._connection)
                self.schema = schema if schema is not None else self._stored_schema()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path)
        with self._checked():
            self.legacy = _is_legacy(self._connection)
            if self.legacy:
                self._connection.close()
                raise ConfigError(LEGACY_STORE.format(path=self.path))
            self._connection.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives a killed process (the WAL is in the OS's hands); only power loss
            # can take back the last commits, and then the run redoes them. FULL fsynced every commit.
            self._connection.execute("PRAGMA synchronous=NORMAL")
            with self._connection:
                for statement in _LEDGER:
                    self._connection.execute(statement)
        self.parts_dir.mkdir(exist_ok=True)
        # Whether any stored row awaits a retry; if none, commits skip looking for rows to replace.
        self._retryable = self._connection.execute("SELECT EXISTS (SELECT 1 FROM results WHERE status = 'failed' AND failure = 'retryable')").fetchone()[0] == 1
        stored = self._stored_schema()
        if schema is None:
            self.schema = stored if stored is not None else result_schema()
        else:
            self.schema = schema if stored is None else pa.unify_schemas([stored, schema])
        if stored is None or not stored.equals(self.schema):
            with self._connection:
                self._connection.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (_schema_json(self.schema),))
        self._remove_orphans()

    # -- lifecycle -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _checked(self):
        """A damaged or foreign file becomes a ConfigError naming it; other SQLite errors (a full disk) pass through."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", None) not in DAMAGED:
                raise
            self._connection.close()
            raise ConfigError(
                f"{self.path}: not a readable results store ({exc}): the file is damaged or is not an asrfair results.sqlite. "
                "Restore it from a copy, or start the run again in a new --out folder."
            ) from None

    def close(self) -> None:
        try:
            if not self.readonly:
                self.flush()
        finally:
            self._connection.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def append(self, table: pa.Table) -> None:
        """Buffer rows; commit a group when enough rows wait or enough time has passed."""
        if table.num_rows:
            self._buffer.append(conform(table, self.schema))
            self._buffered += table.num_rows
        if self._buffered >= self.commit_rows or (self._buffered and time.monotonic() - self._last_commit >= self.commit_interval_s):
            self.flush()

    def write_batch(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer rows given as mappings (tags under "tags" as a name -> value mapping)."""
        self.append(rows_to_table(list(rows), self.schema))

    def flush(self) -> None:
        """Commit every buffered row now: one part file and one ledger transaction."""
        if not self._buffered:
            self._last_commit = time.monotonic()
            return
        table = pa.concat_tables(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer, self._buffered = [], 0
        self._commit(table)
        self._last_commit = time.monotonic()
        if self._n_parts() > self.max_parts:
            self.compact(smallest=self._n_parts() - self.max_parts // 2)

    def _commit(self, table: pa.Table) -> None:
        part = self._next_part()
        file = f"part-{part:08d}{ARROW_SUFFIX}"
        _write_durably(table, self.parts_dir / file)
        try:
            with self._connection:
                self._connection.execute("INSERT INTO parts VALUES (?, ?, ?)", (part, file, table.num_rows))
                if self._retryable:
                    self._replace_retryable(table)
                _insert_keys(self._connection, table, part)
        except sqlite3.IntegrityError:
            (self.parts_dir / file).unlink(missing_ok=True)
            raise HarnessError(_duplicate_message(self, table)) from None
        # A retryable failure committed now can be retried before this store closes.
        if not self._retryable:
            import pyarrow.compute as pc

            self._retryable = bool(pc.any(retryable_mask(table)).as_py())

    def _replace_retryable(self, table: pa.Table) -> None:
        """Rows of this commit that retry a retryable failure supersede it, in the same transaction."""
        pairs = list(zip(table.column("utterance_id").to_pylist(), table.column("condition_key").to_pylist()))
        retryable = "status = 'failed' AND failure = 'retryable'"
        if not _JSON_EACH:  # SQLite before 3.38: no ->> operator; bind the keys row by row, as _insert_keys does
            match = f"{retryable} AND utterance_id = ? AND condition_key = ?"
            self._connection.executemany(f"INSERT INTO superseded SELECT utterance_id, condition_key, part FROM results WHERE {match}", pairs)
            self._connection.executemany(f"DELETE FROM results WHERE {match}", pairs)
            return
        match = f"{retryable} AND (utterance_id, condition_key) IN (SELECT value->>0, value->>1 FROM json_each(?))"
        self._connection.execute(f"INSERT INTO superseded SELECT utterance_id, condition_key, part FROM results WHERE {match}", (json.dumps(pairs),))
        self._connection.execute(f"DELETE FROM results WHERE {match}", (json.dumps(pairs),))

    def discard(self, keys: Iterable[tuple[str, str]]) -> int:
        """Forget stored rows so the run does them again (e.g. failed ones); returns how many."""
        self.flush()
        found = 0
        with self._connection:
            for utterance_id, condition_key in keys:
                row = self._connection.execute("SELECT part FROM results WHERE utterance_id = ? AND condition_key = ?", (utterance_id, condition_key)).fetchone()
                if row is None:
                    continue
                self._connection.execute("INSERT INTO superseded VALUES (?, ?, ?)", (utterance_id, condition_key, row[0]))
                self._connection.execute("DELETE FROM results WHERE utterance_id = ? AND condition_key = ?", (utterance_id, condition_key))
                found += 1
        return found

    def compact(self, *, smallest: int | None = None) -> None:
        """Merge parts (all, or the `smallest` few) into one, dropping superseded rows, streaming one
        part at a time.

        The merged part replaces the old ones in one ledger transaction, so a crash at any point
        leaves either the old parts or the new one, never both or neither. Merging the smallest
        parts keeps the cost of a long run's merges proportional to its rows.
        """
        self.flush()
        listed = self._parts()
        if smallest is not None:
            listed = sorted(sorted(listed, key=lambda entry: entry[2])[: max(2, smallest)])
        dropped = self._superseded()
        if len(listed) < 2 and not any(part in dropped for part, _, _ in listed):
            return
        new_part = self._next_part()
        new_file = f"part-{new_part:08d}{ARROW_SUFFIX}"
        target = self.parts_dir / new_file
        n_rows = 0
        with pa.ipc.new_file(target, self.schema) as writer:
            for part, file, _ in listed:
                table = _drop_superseded(conform(_read_part(self.parts_dir / file), self.schema), dropped.get(part))
                writer.write_table(table)
                n_rows += table.num_rows
        _fsync(target)
        olds = [part for part, _, _ in listed]
        marks = ", ".join("?" for _ in olds)
        with self._connection:
            self._connection.execute("INSERT INTO parts VALUES (?, ?, ?)", (new_part, new_file, n_rows))
            self._connection.execute(f"UPDATE results SET part = ? WHERE part IN ({marks})", (new_part, *olds))
            self._connection.execute(f"DELETE FROM superseded WHERE part IN ({marks})", olds)
            self._connection.execute(f"DELETE FROM parts WHERE part IN ({marks})", olds)
        for _, file, _ in listed:
            (self.parts_dir / file).unlink(missing_ok=True)

    def export(self, path: str | Path) -> Path:
        """All rows in one Parquet file (the run's deliverable), written part by part, never all at once.

        The parts stay the store: they are memory-mapped Arrow files, which reports read in no time,
        where reading the compressed export would take a second per million rows.
        """
        import pyarrow.parquet as pq

        self.flush()
        path = Path(path)
        temporary = path.with_name(path.name + ".tmp")
        with self._checked():
            listed, dropped = self._parts(), self._superseded()
        with pq.ParquetWriter(temporary, self.schema, **write_options(self.schema)) as writer:
            for part, file, _ in listed:
                writer.write_table(_drop_superseded(conform(_read_part(self.parts_dir / file), self.schema), dropped.get(part)))
        temporary.replace(path)
        return path

    # -- reading ---------------------------------------------------------------------------------

    def count(self) -> int:
        """Committed rows."""
        with self._checked():
            return self._connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def done_keys(self, *, retry_failed: bool = False) -> set[tuple[str, str]]:
        """Committed (utterance_id, condition_key) pairs that need no more work; for small runs and tests
        (the runner plans from `read_table`). With `retry_failed`, rows that failed for a retryable
        reason are not done: resume sends them again and they replace the failed rows."""
        table = self.read_table(columns=["utterance_id", "condition_key", "status", "failure"])
        if retry_failed:
            table = table.filter(retryable_mask(table, invert=True))
        return set(zip(table.column("utterance_id").to_pylist(), table.column("condition_key").to_pylist()))

    def retryable_keys(self) -> set[tuple[str, str]]:
        with self._checked():
            return set(self._connection.execute("SELECT utterance_id, condition_key FROM results WHERE status = 'failed' AND failure = 'retryable'"))

    def failure_counts(self) -> dict[str, int]:
        """Failed rows now in the store, by class: what a report will count as failed."""
        with self._checked():
            counts = dict(self._connection.execute("SELECT COALESCE(failure, 'unclassified'), COUNT(*) FROM results WHERE status = 'failed' GROUP BY 1"))
        return {"failed": sum(counts.values()), **counts}

    def read_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every row as one Arrow table in commit order; a writer commits what it buffers first."""
        if self.legacy:
            raise ConfigError(LEGACY_STORE.format(path=self.path))
        if not self.readonly:
            self.flush()
        # The keys come along whatever is asked for: superseded rows and the ledger check need them.
        wanted = None if columns is None else list(dict.fromkeys([*columns, "utterance_id", "condition_key"]))
        for attempt in range(5):
            with self._checked():
                listed, dropped, committed = self._parts(), self._superseded(), self.count()
            try:
                tables = [_drop_superseded(_read_part(self.parts_dir / file, wanted), dropped.get(part)) for part, file, _ in listed]
                break
            except FileNotFoundError:
                # A writer compacted the parts between our listing and our reading: list again.
                if attempt == 4:
                    raise
                time.sleep(0.05)
        schema = self.schema if wanted is None else pa.schema([self.schema.field(name) for name in wanted if name in self.schema.names])
        table = pa.concat_tables([conform(table, schema) for table in tables]) if tables else schema.empty_table()
        if table.num_rows != committed:
            # The parts hold rows the ledger does not list (rows deleted from it by hand, say): the
            # ledger decides. Never the case for a store only this class wrote, so it costs nothing there.
            table = self._listed_only(table)
        return table if columns is None else table.select([name for name in columns if name in table.column_names])

    def _listed_only(self, table: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        with self._checked():
            listed = [f"{u}{KEY_SEPARATOR}{c}" for u, c in self._connection.execute("SELECT utterance_id, condition_key FROM results")]
        return table.filter(pc.is_in(row_keys(table), value_set=pa.array(listed, type=pa.string())))

    def to_frame(self) -> pd.DataFrame:
        return self.read_table().to_pandas()

    # -- internals -------------------------------------------------------------------------------

    def _stored_schema(self) -> pa.Schema | None:
        try:
            row = self._connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else _schema_from_json(row[0])

    def _parts(self) -> list[tuple[int, str, int]]:
        return list(self._connection.execute("SELECT part, file, n_rows FROM parts ORDER BY part"))

    def _n_parts(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM parts").fetchone()[0]

    def _next_part(self) -> int:
        return self._connection.execute("SELECT COALESCE(MAX(part), 0) + 1 FROM parts").fetchone()[0]

    def _superseded(self) -> dict[int, set[tuple[str, str]]]:
        dropped: dict[int, set[tuple[str, str]]] = {}
        for utterance_id, condition_key, part in self._connection.execute("SELECT utterance_id, condition_key, part FROM superseded"):
            dropped.setdefault(part, set()).add((utterance_id, condition_key))
        return dropped

    def _remove_orphans(self) -> None:
        """Delete part files no committed transaction lists (a commit or a compaction cut short)."""
        listed = {file for _, file, _ in self._parts()}
        for entry in self.parts_dir.iterdir():
            if entry.name not in listed:
                entry.unlink(missing_ok=True)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in order: missing ones null, types cast."""
    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.table(columns, schema=schema)


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Row mappings to a table of `schema`; "tags" (a mapping) fills the tag columns, dicts become JSON."""
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in rows:
        tags = row.get("tags") or {}
        for name in schema.names:
            if name.startswith(TAG_PREFIX) and name not in row:
                value = tags.get(name[len(TAG_PREFIX) :])
            else:
                value = row.get(name)
                if isinstance(value, (dict, list)):
                    value = json.dumps(value, sort_keys=True, ensure_ascii=False)
            columns[name].append(value)
    return pa.table({name: pa.array(values, type=schema.field(name).type) for name, values in columns.items()}, schema=schema)


KEY_SEPARATOR = "\x1f"  # a control character no utterance id or condition key contains


def row_keys(table: pa.Table) -> pa.ChunkedArray:
    """(utterance_id, condition_key) of each row as one string column, for membership tests."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(table.column("utterance_id"), table.column("condition_key"), KEY_SEPARATOR)


def retryable_mask(table: pa.Table, *, invert: bool = False) -> pa.Array:
    """Rows that failed for a retryable reason (or, inverted, every other row)."""
    import pyarrow.compute as pc

    mask = pc.and_(pc.equal(table.column("status"), "failed"), pc.equal(table.column("failure"), "retryable")).fill_null(False)
    return pc.invert(mask) if invert else mask


def tag_names_of(schema: pa.Schema) -> list[str]:
    return [name[len(TAG_PREFIX) :] for name in schema.names if name.startswith(TAG_PREFIX)]


# json_each (SQLite 3.38+) takes a group's ids as one JSON array: a third of the time of binding
# them row by row, which was the single largest cost of storing a replayed million rows.
_JSON_EACH = tuple(int(part) for part in sqlite3.sqlite_version.split(".")[:2]) >= (3, 38)


def _insert_keys(connection: sqlite3.Connection, table: pa.Table, part: int) -> None:
    """One ledger row per result row, (utterance_id, condition_key) the primary key."""
    if not _JSON_EACH:
        keys = zip(*(table.column(name).to_pylist() for name in ("utterance_id", "condition_key", "status", "failure")))
        connection.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?)", ((u, c, s, f, part) for u, c, s, f in keys))
        return
    groups = table.select(["utterance_id", "condition_key", "status", "failure"]).group_by(["condition_key", "status", "failure"], use_threads=False).aggregate([("utterance_id", "list")])
    for condition_key, status, failure, ids in zip(*(groups.column(name).to_pylist() for name in ("condition_key", "status", "failure", "utterance_id_list"))):
        connection.execute("INSERT INTO results SELECT value, ?, ?, ?, ? FROM json_each(?)", (condition_key, status, failure, part, json.dumps(ids)))


def _drop_superseded(table: pa.Table, keys: set[tuple[str, str]] | None) -> pa.Table:
    if not keys:
        return table
    pairs = zip(table.column("utterance_id").to_pylist(), table.column("condition_key").to_pylist())
    return table.filter(pa.array([pair not in keys for pair in pairs], type=pa.bool_()))


def _read_part(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """A part's rows: an Arrow IPC file is memory-mapped (no copy, no decoding), Parquet decoded.
    Only requested columns that the part has are read (an older part may lack a newer column)."""
    if path.suffix == ARROW_SUFFIX:
        # The table's buffers point into the mapping and keep it alive; no copy is made.
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        return table if columns is None else table.select([name for name in columns if name in table.column_names])
    import pyarrow.parquet as pq

    if columns is not None:
        names = set(pq.read_schema(path).names)
        columns = [name for name in columns if name in names]
    return pq.read_table(path, columns=columns)


def _write_durably(table: pa.Table, path: Path) -> None:
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)
    _fsync(path)


def write_options(schema: pa.Schema) -> dict[str, Any]:
    """Parquet settings for a complete run's rows: dictionaries for the few-valued columns (conditions,
    status, speakers, tags), none for free text, and lz4: half the size of no compression, a third
    of the time of zstd to write (benchmarks/README.md)."""
    few_values = [name for name in schema.names if name in ("condition_key", "condition", "status", "speaker") or name.startswith(TAG_PREFIX)]
    return {"use_dictionary": few_values, "compression": "lz4", "write_statistics": False}


def _fsync(path: Path) -> None:
    # The part must be on disk before the ledger names it, or power loss could leave a listed part
    # missing. One fsync per group of thousands of rows costs nothing measurable.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _duplicate_message(store: ResultStore, table: pa.Table) -> str:
    ids = table.column("utterance_id").to_pylist()
    keys = table.column("condition_key").to_pylist()
    seen: set[tuple[str, str]] = set()
    for pair in zip(ids, keys):
        stored = store._connection.execute("SELECT 1 FROM results WHERE utterance_id = ? AND condition_key = ?", pair).fetchone()
        if stored is not None or pair in seen:
            return DUPLICATE_ROW.format(path=store.path, utterance_id=pair[0], condition_key=pair[1])
        seen.add(pair)
    return DUPLICATE_ROW.format(path=store.path, utterance_id="?", condition_key="?")


def _is_legacy(connection: sqlite3.Connection) -> bool:
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return "results" in tables and "parts" not in tables


def _schema_json(schema: pa.Schema) -> str:
    return json.dumps([[field.name, str(field.type)] for field in schema])


def _schema_from_json(text: str) -> pa.Schema:
    return pa.schema([(name, pa.type_for_alias(kind)) for name, kind in json.loads(text)])
