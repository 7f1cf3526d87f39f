"""DynamoDB Local's SQLite database: where it lives, and the stream-record indexes it lacks.

DynamoDB Local 3.3.0 keeps every stream record of every table in one SQLite table, ``us``
(``StreamID, ShardID, SequenceNumber PRIMARY KEY, ...``), with no index but the global
sequence number. Two of its statements then scan it:

* every call on a table that has a stream (a write, a Query, DescribeTable) reads the
  stream's description, whose ``SELECT MIN(SequenceNumber) FROM us WHERE StreamID=?`` walks
  the records of every stream from the oldest until it meets this stream's first one;
* every GetRecords looks up its shard's newest record (``... WHERE ShardID=? ORDER BY
  SequenceNumber DESC LIMIT 1``), walking back over every newer record of other streams: an
  idle stream's poll costs as much as everything written since it last had a record.

So calls slow down as the run writes: measured on this machine (2 cores), 25-item
BatchWriteItem into a streamed table whose stream began after 40,000 records of another's
went from about 1,000 items/s to 30, and an empty GetRecords from 4 ms to 66 ms; with the two
indexes below, 1,670 items/s and 3 ms (``/tmp`` scratch script, recorded in the README's
emulator section). In a bench run at 20 posts/s, two thirds of the emulator's one SQLite
thread was in those scans (a JFR profile of the JVM). DynamoDB's own cost per call does not
grow with the stream, so the indexes make the emulator closer to it, not further: they
change no answer, only the time to find it.

The indexes need the database in a file (``-inMemory`` cannot be reached from outside the
JVM), so an unpersisted DynamoDB Local keeps its file on a RAM-backed directory
(:func:`scratch_dir`, ``/dev/shm`` on Linux): as fast as ``-inMemory``, where a disk file
would pay SQLite's fsync on every write (about 3x slower here). Without one, it stays
``-inMemory`` and unindexed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

import psutil

__all__ = [
    "DB_FILE",
    "STREAM_RECORD_INDEXES",
    "index_stream_records",
    "reclaim_scratch_dirs",
    "scratch_dir",
]

logger = logging.getLogger(__name__)

# With -sharedDb, DynamoDB Local keeps every table in this one file of its -dbPath.
DB_FILE = "shared-local-instance.db"

# (index name, column list): the stream's records by stream and by shard, each in sequence
# order - what the two scanning statements above filter and sort by.
STREAM_RECORD_INDEXES = (
    ("ripple_us_stream_sequence", ("StreamID", "SequenceNumber")),
    ("ripple_us_shard_sequence", ("ShardID", "SequenceNumber")),
)

# RAM-backed directories that hold scratch databases; the first writable one is used.
RAM_DIRS = (Path("/dev/shm"),)
SCRATCH_PREFIX = "ripple-dynamodb-"
_SCRATCH_NAME = re.compile(rf"^{SCRATCH_PREFIX}(\d+)-")


def index_stream_records(db_file: Path) -> bool:
    """Add :data:`STREAM_RECORD_INDEXES` to DynamoDB Local's database (idempotent).

    Returns True when the indexes are there, False (with a warning) when the file has no
    ``us`` table with the expected columns - a DynamoDB Local whose layout is not 3.3.0's is
    left as it is. Run it once DynamoDB Local has created its schema (its first signed
    request) and before the stack's traffic: the index build holds SQLite's write lock.
    Raises ``sqlite3.Error`` when the file cannot be opened or written.
    """
    connection = sqlite3.connect(db_file, timeout=30.0)
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(us)")}
        wanted = {column for _, index_columns in STREAM_RECORD_INDEXES for column in index_columns}
        if not wanted <= columns:
            logger.warning(
                "DynamoDB Local's database %s has no stream-record table of the known layout"
                " (columns %s); stream calls will slow down as records accumulate",
                db_file,
                sorted(columns),
            )
            return False
        for name, index_columns in STREAM_RECORD_INDEXES:
            connection.execute(f"CREATE INDEX IF NOT EXISTS {name} ON us ({', '.join(index_columns)})")
        connection.commit()
        return True
    finally:
        connection.close()


def scratch_dir() -> Path | None:
    """A new directory for an unpersisted database on a RAM-backed file system, named after
    this process (so :func:`reclaim_scratch_dirs` knows when it is abandoned); None when
    there is no writable RAM-backed directory (then DynamoDB Local runs ``-inMemory``)."""
    for ram in RAM_DIRS:
        if ram.is_dir() and os.access(ram, os.W_OK):
            reclaim_scratch_dirs(ram)
            return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=ram))
    return None


def reclaim_scratch_dirs(ram: Path) -> list[Path]:
    """Remove scratch databases whose owner process is gone (a ``make up`` killed with
    SIGKILL cannot remove its own; DynamoDB Local dies with its owner, so nothing uses them).
    Only directories named by :func:`scratch_dir` are touched. Returns those removed."""
    removed = []
    for entry in ram.glob(f"{SCRATCH_PREFIX}*"):
        match = _SCRATCH_NAME.match(entry.name)
        if match is None or not entry.is_dir() or psutil.pid_exists(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed
