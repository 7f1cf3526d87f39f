"""DynamoDB Local's database file: the stream-record indexes and the scratch directories.

The SQLite statements are DynamoDB Local 3.3.0's own (``ripple_local.dynamodb_local`` has
them, read from its jar with javap). Given the jar's ``us`` table, the first two walk the
stream records of every stream until the indexes are added. The plans here are this
Python's SQLite (3.40 here); the integration test plans them with the jar's own (3.8.7),
whose planner differs.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ripple_local import dynamodb_local
from ripple_local.dynamodb_local import (
    ENGINE_US_TABLE,
    FIRST_RECORD_OF_STREAM,
    NEWEST_RECORD_OF_SHARD,
    RECORDS_AFTER,
    index_stream_records,
    reclaim_scratch_dirs,
    scratch_dir,
)


def database(path: Path) -> Path:
    db_file = path / dynamodb_local.DB_FILE
    with sqlite3.connect(db_file) as connection:
        connection.execute(ENGINE_US_TABLE)
        connection.executemany(
            "INSERT INTO us VALUES (?, ?, ?, 0, x'00', 'INSERT')",
            [(f"stream-{n % 3}", f"shard-{n % 3}", n) for n in range(300)],
        )
    return db_file


def plan(db_file: Path, statement: str, *parameters: object) -> str:
    with sqlite3.connect(db_file) as connection:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
    return " | ".join(str(row[-1]) for row in rows)


def test_the_engines_stream_lookups_scan_every_record_until_indexed(tmp_path: Path) -> None:
    # Given DynamoDB Local's stream-record table as the jar creates it
    db_file = database(tmp_path)
    assert "INDEX" not in plan(db_file, FIRST_RECORD_OF_STREAM, "stream-1")  # rowid order, filtered
    assert "INDEX" not in plan(db_file, NEWEST_RECORD_OF_SHARD, "shard-1")

    # When the indexes are added, twice (a restart with --persist finds them there)
    assert index_stream_records(db_file) is True
    assert index_stream_records(db_file) is True

    # Then each lookup is a search of one stream's or one shard's records, and GetRecords'
    # read seeks its shard at the iterator (the rowid range), not at the shard's first record
    assert "USING COVERING INDEX ripple_us_stream" in plan(db_file, FIRST_RECORD_OF_STREAM, "stream-1")
    newest = plan(db_file, NEWEST_RECORD_OF_SHARD, "shard-1")
    records_after = plan(db_file, RECORDS_AFTER, "stream-1", "shard-1", 10, -1, 9)
    assert "ripple_us_shard" in newest
    assert "ripple_us_shard (ShardID=? AND rowid>?)" in records_after
    assert "TEMP B-TREE" not in newest + records_after  # read in the index's order, not sorted
    # and they answer as before
    with sqlite3.connect(db_file) as connection:
        assert connection.execute(FIRST_RECORD_OF_STREAM, ("stream-1",)).fetchone() == (1,)
        assert connection.execute(NEWEST_RECORD_OF_SHARD, ("shard-1",)).fetchone() == (298,)
        after = connection.execute(RECORDS_AFTER, ("stream-1", "shard-1", 10, -1, 3)).fetchall()
        assert [row[0] for row in after] == [10, 13, 16]


def test_the_first_versions_indexes_are_replaced(tmp_path: Path) -> None:
    # Given a --persist file indexed by the first version (the sequence number named)
    db_file = database(tmp_path)
    with sqlite3.connect(db_file) as connection:
        for name, column in zip(dynamodb_local.SUPERSEDED_INDEXES, ("StreamID", "ShardID"), strict=True):
            connection.execute(f"CREATE INDEX {name} ON us ({column}, SequenceNumber)")

    assert index_stream_records(db_file) is True

    with sqlite3.connect(db_file) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert names == {name for name, _ in dynamodb_local.STREAM_RECORD_INDEXES}


def test_a_missing_database_file_is_an_error_not_a_new_empty_file(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        index_stream_records(tmp_path / dynamodb_local.DB_FILE)
    assert not (tmp_path / dynamodb_local.DB_FILE).exists()


def test_a_database_of_another_layout_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db_file = tmp_path / dynamodb_local.DB_FILE
    with sqlite3.connect(db_file) as connection:
        connection.execute("CREATE TABLE us (id INTEGER PRIMARY KEY, payload BLOB)")

    assert index_stream_records(db_file) is False

    with sqlite3.connect(db_file) as connection:
        assert connection.execute("SELECT name FROM sqlite_master WHERE type='index'").fetchall() == []
    assert "no stream-record table of the known layout" in caplog.text


def test_a_scratch_directory_is_on_the_ram_disk_locked_by_its_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamodb_local, "RAM_DIRS", (tmp_path / "missing", tmp_path))

    made = scratch_dir()

    assert made is not None and made.path.parent == tmp_path and made.path.is_dir()
    assert made.path.name.startswith(dynamodb_local.SCRATCH_PREFIX)
    # another process cannot take the owner's lock while the owner lives
    probe = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR);"
        " fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )
    taken = subprocess.run(
        [sys.executable, "-c", probe, str(made.path / dynamodb_local.OWNER_LOCK)], check=False
    )
    assert taken.returncode != 0
    made.remove()
    made.remove()  # idempotent
    assert not made.path.exists()


def test_without_a_ram_disk_with_room_there_is_no_scratch_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dynamodb_local, "RAM_DIRS", (tmp_path / "missing",))
    assert scratch_dir() is None
    assert "runs -inMemory, without its stream-record indexes" in caplog.text

    monkeypatch.setattr(dynamodb_local, "RAM_DIRS", (tmp_path,))
    monkeypatch.setattr(dynamodb_local, "MIN_FREE_BYTES", 2**62)  # more than any disk has free
    assert scratch_dir() is None
    assert list(tmp_path.iterdir()) == []


def test_only_scratch_directories_whose_owner_is_gone_are_reclaimed(tmp_path: Path) -> None:
    # Given a scratch directory whose owner exited holding its lock, one whose owner (this
    # process) lives, one being made (no lock file yet) and directories that are not ours
    abandoned = tmp_path / f"{dynamodb_local.SCRATCH_PREFIX}1-abc"
    abandoned.mkdir()
    hold = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR);"
        " fcntl.flock(fd, fcntl.LOCK_EX)"
    )
    subprocess.run([sys.executable, "-c", hold, str(abandoned / dynamodb_local.OWNER_LOCK)], check=True)
    (tmp_path / f"{dynamodb_local.SCRATCH_PREFIX}{os.getpid()}-def").mkdir()
    live = dynamodb_local.ScratchDir(tmp_path / f"{dynamodb_local.SCRATCH_PREFIX}{os.getpid()}-def")
    being_made = tmp_path / f"{dynamodb_local.SCRATCH_PREFIX}2-ghi"
    foreign = tmp_path / "someone-elses"
    for directory in (being_made, foreign):
        directory.mkdir()
    (foreign / dynamodb_local.OWNER_LOCK).write_bytes(b"")

    removed = reclaim_scratch_dirs(tmp_path)

    assert removed == [abandoned]
    assert not abandoned.exists()
    assert live.path.exists() and being_made.exists() and foreign.exists()
    live.remove()
