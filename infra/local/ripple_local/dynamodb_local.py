"""DynamoDB Local's SQLite database: where it lives, and the stream-record indexes it lacks.

DynamoDB Local 3.3.0 keeps every stream record of every table in one SQLite table, ``us``
(``StreamID, ShardID, SequenceNumber PRIMARY KEY, ...``), with no index but the global
sequence number (its statements, read from the jar with javap, are below). Two of them then
scan it:

* every call on a table that has a stream (a write, a Query, DescribeTable) reads the
  stream's description, whose ``SELECT MIN(SequenceNumber) FROM us WHERE StreamID=?`` walks
  the records of every stream from the oldest until it meets this stream's first one;
* every GetRecords looks up its shard's newest record (``... WHERE ShardID=? ORDER BY
  SequenceNumber DESC LIMIT 1``), walking back over every newer record of other streams: an
  idle stream's poll costs as much as everything written since it last had a record.

So calls slow down as the run writes; the README's emulator section has the numbers
(``python -m bench.stream_backlog`` measures them). DynamoDB's own cost per call does not
grow with its streams, so the two indexes below make the emulator closer to it, not
further: they change no answer, only the time to find it. They name no sequence column
(:data:`STREAM_RECORD_INDEXES` says why): the jar's SQLite would otherwise read a busy
shard from its first record on every GetRecords.

The indexes need the database in a file (``-inMemory`` cannot be reached from outside the
JVM), so an unpersisted DynamoDB Local keeps its file in a scratch directory on a RAM-backed
file system (:func:`scratch_dir`, ``/dev/shm`` on Linux): slightly slower per call than
``-inMemory`` on an empty engine, and no fsync to a disk. Without room there, it stays
``-inMemory`` and unindexed (with a warning).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

__all__ = [
    "DB_FILE",
    "ENGINE_US_TABLE",
    "FIRST_RECORD_OF_STREAM",
    "NEWEST_RECORD_OF_SHARD",
    "RECORDS_AFTER",
    "STREAM_RECORD_INDEXES",
    "SUPERSEDED_INDEXES",
    "ScratchDir",
    "index_stream_records",
    "reclaim_scratch_dirs",
    "scratch_dir",
]

logger = logging.getLogger(__name__)

# With -sharedDb, DynamoDB Local keeps every table in this one file of its -dbPath.
DB_FILE = "shared-local-instance.db"

# DynamoDB Local 3.3.0's stream-record table and the three statements on it that the indexes
# serve, as the jar has them (SQLiteDBAccess, read with javap): the stream description's
# first record, GetRecords' newest record of its shard, and GetRecords' read after its
# iterator. The tests plan them with Python's SQLite and with the jar's own.
ENGINE_US_TABLE = (
    "CREATE TABLE IF NOT EXISTS us (StreamID TEXT, ShardID TEXT, SequenceNumber INTEGER,"
    " CreationDateTime INTEGER, StreamRecord BLOB, OperationType TEXT, PRIMARY KEY(SequenceNumber));"
)
FIRST_RECORD_OF_STREAM = "SELECT MIN(SequenceNumber) FROM us WHERE StreamID=?"
NEWEST_RECORD_OF_SHARD = "SELECT SequenceNumber FROM us WHERE ShardID=? ORDER BY SequenceNumber DESC LIMIT 1"
RECORDS_AFTER = (
    "SELECT SequenceNumber, StreamRecord, OperationType, CreationDateTime FROM us WHERE StreamID = ?"
    " AND ShardID = ? AND SequenceNumber >= ? AND CreationDateTime > ? ORDER BY SequenceNumber ASC LIMIT ?"
)

# (index name, column list): the stream's records by stream and by shard. SequenceNumber is
# the table's INTEGER PRIMARY KEY, so it is the rowid, which SQLite appends to every index:
# each index is in sequence order within a stream or shard without naming it. Naming it
# costs: the jar's SQLite (sqlite4java's 3.8.7) then seeks only the equality of a
# (ShardID, SequenceNumber) index, and GetRecords' "SequenceNumber >= ?" walks the shard's
# records from its first - every poll of a busy stream at its tip read the whole stream.
# With the rowid implicit it plans "ShardID=? AND rowid>?": a seek to the iterator.
STREAM_RECORD_INDEXES = (
    ("ripple_us_stream", ("StreamID",)),
    ("ripple_us_shard", ("ShardID",)),
)
# The first version's indexes (sequence named), dropped from a --persist file that has them:
# the planner would go on choosing them.
SUPERSEDED_INDEXES = ("ripple_us_stream_sequence", "ripple_us_shard_sequence")

# How long the index build waits for SQLite's lock. DynamoDB Local sets no busy timeout of
# its own (the jar never calls setBusyTimeout), so a statement of its that meets the build's
# lock fails at once: the build must run before anyone's traffic, and then waits for nothing.
LOCK_WAIT_S = 30.0

# RAM-backed directories for scratch databases; the first one with room is used.
RAM_DIRS = (Path("/dev/shm"),)
# Free space a RAM directory needs: the database holds every table and stream record of the
# run in RAM, as -inMemory did, and SQLite fails writes once the file system is full, where
# -inMemory only needs heap. Docker gives a container 64 MB of /dev/shm by default: too little.
MIN_FREE_BYTES = 512 * 1024 * 1024
SCRATCH_PREFIX = "ripple-dynamodb-"
OWNER_LOCK = "owner.lock"  # held (flock) by the process that made the directory, while it lives


class ScratchDir:
    """A scratch database directory and the lock that says its owner is alive.

    The lock is an ``flock`` on :data:`OWNER_LOCK` inside the directory, held through an open
    file of this process (not inherited by children): the kernel drops it when the process
    dies, however it dies, so :func:`reclaim_scratch_dirs` can tell an abandoned directory
    from one in use, whatever process ids mean where it looks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = os.open(path / OWNER_LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def remove(self) -> None:
        """Delete the directory (the database with it), then let go of the lock. Idempotent."""
        if self._lock < 0:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = -1


def index_stream_records(db_file: Path) -> bool:
    """Add :data:`STREAM_RECORD_INDEXES` to DynamoDB Local's database ``db_file`` (idempotent).

    Returns True when the indexes are there, False (with a warning) when the file has no
    ``us`` table with the expected columns - a DynamoDB Local whose layout is not 3.3.0's is
    left as it is. Run it once DynamoDB Local has created its schema (its first signed
    request) and before the stack's traffic (:data:`LOCK_WAIT_S` says why). Raises
    ``sqlite3.Error`` when the file is missing or cannot be written.
    """
    connection = sqlite3.connect(f"file:{db_file}?mode=rw", uri=True, timeout=LOCK_WAIT_S)
    try:
        rows = connection.execute("PRAGMA table_info(us)").fetchall()
        layout = {row[1]: (str(row[2]).upper(), row[5]) for row in rows}  # name: (type, in primary key)
        columns = set(layout)
        wanted = {column for _, index_columns in STREAM_RECORD_INDEXES for column in index_columns}
        # The indexes are in sequence order only while the sequence number is the rowid.
        if not wanted <= columns or layout.get("SequenceNumber") != ("INTEGER", 1):
            logger.warning(
                "DynamoDB Local's database %s has no stream-record table of the known layout"
                " (columns %s); stream calls will slow down as records accumulate",
                db_file,
                sorted(columns),
            )
            return False
        for name in SUPERSEDED_INDEXES:
            connection.execute(f"DROP INDEX IF EXISTS {name}")
        for name, index_columns in STREAM_RECORD_INDEXES:
            connection.execute(f"CREATE INDEX IF NOT EXISTS {name} ON us ({', '.join(index_columns)})")
        connection.commit()
        return True
    finally:
        connection.close()


def scratch_dir() -> ScratchDir | None:
    """A new directory for an unpersisted database on a RAM-backed file system with at least
    :data:`MIN_FREE_BYTES` free, locked as this process's (:class:`ScratchDir`); None, with a
    warning, when there is none (then DynamoDB Local runs ``-inMemory``, unindexed)."""
    for ram in RAM_DIRS:
        if not (ram.is_dir() and os.access(ram, os.W_OK)):
            continue
        reclaim_scratch_dirs(ram)
        if shutil.disk_usage(ram).free < MIN_FREE_BYTES:
            logger.warning("%s has less than %d MB free", ram, MIN_FREE_BYTES // 2**20)
            continue
        return ScratchDir(Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=ram)))
    logger.warning(
        "no RAM-backed directory with room for DynamoDB Local's database (%s): it runs -inMemory,"
        " without its stream-record indexes, so stream calls slow down as records accumulate",
        ", ".join(map(str, RAM_DIRS)),
    )
    return None


def reclaim_scratch_dirs(ram: Path) -> list[Path]:
    """Remove this user's scratch databases whose owner is gone (a ``make up`` killed with
    SIGKILL cannot remove its own; DynamoDB Local dies with its owner, so nothing uses them).

    Owned means the :class:`ScratchDir` lock is held; a directory without a lock file (one
    being made this instant) is left. Only directories named by :func:`scratch_dir` and
    owned by this user are touched. Returns those removed."""
    removed = []
    for entry in ram.glob(f"{SCRATCH_PREFIX}*"):
        with contextlib.suppress(OSError):
            if not entry.is_dir() or entry.is_symlink() or entry.stat().st_uid != os.getuid():
                continue
            lock = os.open(entry / OWNER_LOCK, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError: the owner holds it
                shutil.rmtree(entry, ignore_errors=True)
            finally:
                os.close(lock)
            if not entry.exists():
                removed.append(entry)
    return removed
