"""A real DynamoDB Local as the stack starts it: its database file, indexed, and gone at stop.

(Speed is the bench's business, figure 7 and the README's emulator section; these tests show
that the engine runs from the file with the indexes and still answers as DynamoDB does.)
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ripple_local import aws, dynamodb_local, tools
from ripple_local.dynamodb_local import (
    FIRST_RECORD_OF_STREAM,
    NEWEST_RECORD_OF_SHARD,
    RECORDS_AFTER,
    index_stream_records,
)
from ripple_local.processes import DynamoDBLocalIndexError, DynamoDBLocalProcess
from tests.unit.local_stack.test_dynamodb_local import database  # the jar's us table, with records

INDEX_NAMES = {name for name, _ in dynamodb_local.STREAM_RECORD_INDEXES}


def indexes(db_file: Path) -> set[str]:
    with sqlite3.connect(db_file) as connection:
        query = "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='us'"
        rows = connection.execute(query).fetchall()
    return {str(row[0]) for row in rows}


def streamed_table(client: object, name: str) -> str:
    client.create_table(  # type: ignore[attr-defined]
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return str(client.describe_table(TableName=name)["Table"]["LatestStreamArn"])  # type: ignore[attr-defined]


def stream_keys(url: str, stream_arn: str) -> list[str]:
    streams = aws.client("dynamodbstreams", url)
    deadline = time.monotonic() + 30
    while True:
        shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        keys: list[str] = []
        for shard in shards:
            iterator = streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            records = streams.get_records(ShardIterator=iterator, Limit=100)["Records"]
            keys += [record["dynamodb"]["Keys"]["pk"]["S"] for record in records]
        if keys or time.monotonic() > deadline:
            return keys
        time.sleep(0.2)


def test_an_unpersisted_engine_runs_from_an_indexed_scratch_file_removed_at_stop(tmp_path: Path) -> None:
    process = DynamoDBLocalProcess.start_on_free_port(state_dir=tmp_path)
    scratch = process.scratch_path
    try:
        if scratch is None:
            pytest.skip("no RAM-backed directory here: DynamoDB Local runs -inMemory, unindexed")
        # Given the engine as the stack starts it: the database is a file on the RAM disk
        assert process.indexed
        db_file = scratch / dynamodb_local.DB_FILE
        assert indexes(db_file) >= INDEX_NAMES

        # When a streamed table is written
        client = aws.client("dynamodb", process.url)
        arn = streamed_table(client, "scratch-streamed")
        for key in ("a", "b", "c"):
            client.put_item(TableName="scratch-streamed", Item={"pk": {"S": key}})

        # Then its items and its stream answer as usual
        assert client.get_item(TableName="scratch-streamed", Key={"pk": {"S": "b"}})["Item"]["pk"]["S"] == "b"
        assert stream_keys(process.url, arn) == ["a", "b", "c"]
    finally:
        process.stop()
    assert scratch is not None and not scratch.exists()


def test_a_persisted_engine_keeps_its_data_and_indexes_across_restarts(tmp_path: Path) -> None:
    db_path = tmp_path / "dynamodb"
    persisted = DynamoDBLocalProcess("127.0.0.1", 0, tmp_path / "two", db_path=db_path)
    persisted.start_on_any_free_port()
    try:
        assert persisted.scratch_path is None and persisted.indexed
        client = aws.client("dynamodb", persisted.url)
        streamed_table(client, "kept-streamed")
        client.put_item(TableName="kept-streamed", Item={"pk": {"S": "kept"}})
    finally:
        persisted.stop()
    assert indexes(db_path / dynamodb_local.DB_FILE) >= INDEX_NAMES  # kept in the file itself

    again = DynamoDBLocalProcess("127.0.0.1", 0, tmp_path / "three", db_path=db_path)
    again.start_on_any_free_port()
    try:
        assert again.indexed
        client = aws.client("dynamodb", again.url)
        item = client.get_item(TableName="kept-streamed", Key={"pk": {"S": "kept"}})["Item"]
        assert item["pk"]["S"] == "kept"
        assert indexes(db_path / dynamodb_local.DB_FILE) >= INDEX_NAMES
    finally:
        again.stop()


def test_an_engine_whose_database_cannot_be_indexed_is_stopped_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an index build that fails (a locked or unwritable database)
    attempts: list[Path] = []

    def locked(db_file: Path) -> bool:
        attempts.append(db_file)
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(dynamodb_local, "index_stream_records", locked)

    # When the engine starts, Then the start fails once, saying why, and leaves nothing
    process = DynamoDBLocalProcess("127.0.0.1", 0, tmp_path)
    with pytest.raises(DynamoDBLocalIndexError, match="database is locked"):
        process.start_on_any_free_port()
    if not attempts:
        pytest.skip("no RAM-backed directory here: nothing to index")
    assert len(attempts) == 1  # not retried on another port as if the port were taken
    assert not process.running
    assert process.scratch_path is None and not attempts[0].parent.exists()


def engine_plans(db_file: Path, *statements: str) -> list[str]:
    """EXPLAIN QUERY PLAN of ``statements`` by the SQLite inside DynamoDB Local (sqlite4java's,
    through ``QueryPlan.java`` run as a source file), one line each."""
    install = tools.dynamodb_local()
    command = [
        tools.find_java("java"),
        f"-Djava.library.path={install.library_path}",
        "-cp",
        str(install.library_path / "sqlite4java.jar"),
        str(Path(__file__).with_name("QueryPlan.java")),
        str(db_file),
        *statements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("sqlite "), result.stdout + result.stderr
    return lines[1:]


def test_the_engines_own_sqlite_reads_a_busy_shard_from_the_iterator_not_its_first_record(
    tmp_path: Path,
) -> None:
    # Given stream records as DynamoDB Local stores them, indexed as the stack indexes them
    db_file = database(tmp_path)
    assert index_stream_records(db_file) is True

    # When the jar's own SQLite plans the engine's statements
    statements = (FIRST_RECORD_OF_STREAM, NEWEST_RECORD_OF_SHARD, RECORDS_AFTER)
    first, newest, after = engine_plans(db_file, *statements)

    # Then each seeks one stream or shard; GetRecords' read seeks the iterator's position
    assert "ripple_us_stream (StreamID=?)" in first
    assert "ripple_us_shard (ShardID=?)" in newest
    assert "ripple_us_shard (ShardID=? AND rowid>?)" in after
    assert "TEMP B-TREE" not in newest + after  # read in the index's order, not sorted

    # (The first version named the sequence number in its indexes: this SQLite then sought
    # only the shard, and every GetRecords read the shard from its first record.)
    with sqlite3.connect(db_file) as connection:
        for (name, _), old, column in zip(
            dynamodb_local.STREAM_RECORD_INDEXES,
            dynamodb_local.SUPERSEDED_INDEXES,
            ("StreamID", "ShardID"),
            strict=True,
        ):
            connection.execute(f"DROP INDEX {name}")
            connection.execute(f"CREATE INDEX {old} ON us ({column}, SequenceNumber)")
    (superseded,) = engine_plans(db_file, RECORDS_AFTER)
    assert superseded.endswith("ripple_us_shard_sequence (ShardID=?)")
