"""The runner's pure parts: record shape, property parsing, backoff and checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ripple_local
from ripple_local.esm import (
    CheckpointStore,
    MappingConfig,
    RetryBackoff,
    as_utc,
    estimated_creation,
    lambda_record,
)

STREAM_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/2024-01-01T00:00:00.000"


def test_lambda_record_has_lambdas_shape() -> None:
    # Given a record as boto3 returns it from GetRecords
    raw = {
        "eventID": "e1",
        "eventName": "MODIFY",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}, "blob": {"B": b"\x00\x01"}, "set": {"BS": [b"\xff"]}},
            "OldImage": {"pk": {"S": "a"}, "n": {"N": "1"}},
            "SequenceNumber": "100",
            "SizeBytes": 42,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    # When it is converted
    record = lambda_record(raw, STREAM_ARN)
    # Then it is what Lambda hands a handler
    assert record == {
        "eventID": "e1",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1704164645,
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}, "blob": {"B": "AAE="}, "set": {"BS": ["/w=="]}},
            "OldImage": {"pk": {"S": "a"}, "n": {"N": "1"}},
            "SequenceNumber": "100",
            "SizeBytes": 42,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": STREAM_ARN,
    }
    json.dumps(record)  # and it is plain JSON


def test_a_minute_rounded_stamp_is_bounded_by_when_the_runner_read_the_record() -> None:
    # Given DynamoDB Local's stamp, rounded down to the minute, on a record written at 10:00:59.2
    # and read by the runner at 10:00:59.5 (the CI failure this came from: 9 ages over 60 s)
    stamp = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    read_at = datetime(2026, 12, 1, 10, 0, 59, 500000, tzinfo=UTC)
    # When its creation is estimated
    created = estimated_creation(stamp, read_at)
    # Then it is no later than the read, so its age is the runner's, not the rounding's
    assert created == read_at


def test_a_minute_rounded_stamp_read_late_is_bounded_by_its_minute() -> None:
    # Given a stamp rounded down to 10:00 and a runner that read it 5 minutes later (backlog)
    stamp = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    read_at = stamp + timedelta(minutes=5)
    # Then the record was created before 10:01: the backlog shows in its age
    assert estimated_creation(stamp, read_at) == stamp + timedelta(minutes=1)


def test_a_second_rounded_stamp_is_bounded_by_its_second() -> None:
    # Given AWS's stamp, rounded down to the second (naive, so UTC)
    stamp = datetime(2026, 12, 1, 10, 0, 7)
    utc = stamp.replace(tzinfo=UTC)
    # Then a late read moves it at most a second; an early read bounds it
    assert estimated_creation(stamp, utc + timedelta(seconds=30)) == utc + timedelta(seconds=1)
    assert estimated_creation(stamp, utc + timedelta(milliseconds=300)) == utc + timedelta(milliseconds=300)


def test_an_exact_stamp_is_taken_as_it_is() -> None:
    # Given moto's stamp, to the microsecond, on a record the runner read 20 s later
    stamp = datetime(2026, 12, 1, 10, 0, 7, 123456, tzinfo=UTC)
    # Then the stamp is the creation time and the 20 s are the record's age
    assert estimated_creation(stamp, stamp + timedelta(seconds=20)) == stamp
    assert estimated_creation(stamp, None) == stamp


def test_a_stamp_is_read_as_utc_whatever_its_form() -> None:
    # boto3's aware datetime, a naive one, epoch seconds (Lambda's form), none
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert as_utc(moment) == as_utc(moment.replace(tzinfo=None)) == as_utc(1704164645) == moment
    assert as_utc(1704164645.5) == moment + timedelta(milliseconds=500)
    assert as_utc(None) is None and as_utc("2024-01-02") is None and as_utc(True) is None
    # and Lambda's record of a naive stamp says the same second as of an aware one
    raw = {"dynamodb": {"ApproximateCreationDateTime": moment.replace(tzinfo=None), "SequenceNumber": "1"}}
    assert lambda_record(raw, STREAM_ARN)["dynamodb"]["ApproximateCreationDateTime"] == 1704164645


def test_mapping_config_reads_resolved_string_properties() -> None:
    config = MappingConfig.from_properties(
        {
            "Stream": STREAM_ARN,
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": "50",
            "MaximumBatchingWindowInSeconds": "0",
            "MaximumRetryAttempts": "3",
            "BisectBatchOnFunctionError": "true",
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:1:q"}},
        }
    )
    assert config == MappingConfig(
        batch_size=50,
        starting_position="TRIM_HORIZON",
        maximum_retry_attempts=3,
        bisect_on_error=True,
        report_batch_item_failures=True,
        on_failure_destination="arn:aws:sqs:us-east-1:1:q",
        batching_window_s=0.0,
    )


def test_mapping_config_defaults_are_lambdas() -> None:
    config = MappingConfig.from_properties({"Stream": STREAM_ARN})
    assert config.batch_size == 100 and config.maximum_retry_attempts == -1
    assert not config.bisect_on_error and not config.report_batch_item_failures
    assert config.starting_position == "LATEST" and config.on_failure_destination is None


def test_retry_backoff_is_exponential_and_capped() -> None:
    backoff = RetryBackoff(initial_s=0.1, multiplier=2.0, maximum_s=0.5)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_checkpoints_survive_a_new_store_and_leave_no_temp_files(tmp_path: Path) -> None:
    # Given checkpoints written by one store
    store = CheckpointStore(tmp_path)
    store.put("fn|arn", "shard-1", "105")
    store.put("fn|arn", "shard-1", "107")
    store.mark_ended("fn|arn", "shard-0")
    # When a new store reads the same state directory
    reopened = CheckpointStore(tmp_path)
    # Then it sees the last commit, and only the JSON file is there
    assert reopened.get("fn|arn", "shard-1") == "107"
    assert reopened.get("fn|arn", "shard-2") is None
    assert reopened.is_ended("fn|arn", "shard-0") and not reopened.is_ended("fn|arn", "shard-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints.json"]


def test_a_corrupt_checkpoint_file_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "checkpoints.json").write_text("{not json")
    store = CheckpointStore(tmp_path)
    assert store.get("fn|arn", "shard-1") is None
    assert (tmp_path / "checkpoints.corrupt").exists()


def test_two_stores_on_one_state_directory_keep_each_others_commits(tmp_path: Path) -> None:
    # Given two stores (two runner processes) that loaded the directory before either wrote
    fanout, refresher = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    # When each commits its own mappings, interleaved
    fanout.put("fanout|posts", "shard-1", "10")
    refresher.put("refresher|feed", "shard-9", "90")
    fanout.put("fanout|posts", "shard-1", "11")
    refresher.mark_ended("refresher|feed", "shard-8")
    # Then the file holds both processes' latest entries, and either store's snapshot shows all
    reopened = CheckpointStore(tmp_path)
    assert reopened.get("fanout|posts", "shard-1") == "11"
    assert reopened.get("refresher|feed", "shard-9") == "90"
    assert reopened.is_ended("refresher|feed", "shard-8")
    assert fanout.snapshot() == refresher.snapshot() == reopened.snapshot()


WRITER = """
import sys
from ripple_local.checkpoints import CheckpointStore
store = CheckpointStore(sys.argv[1])
for n in range(1, 201):
    store.put(sys.argv[2], "shard-1", str(n))
"""


def test_concurrent_processes_writing_checkpoints_lose_none(tmp_path: Path) -> None:
    source = str(Path(ripple_local.__file__).resolve().parents[1])  # this checkout's infra/local
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"fn{i}|arn"], env=env)
        for i in range(3)
    ]
    assert [writer.wait(60) for writer in writers] == [0, 0, 0]
    store = CheckpointStore(tmp_path)
    assert [store.get(f"fn{i}|arn", "shard-1") for i in range(3)] == ["200", "200", "200"]
