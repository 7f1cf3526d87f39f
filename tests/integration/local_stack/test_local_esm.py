"""The local DynamoDB Streams event source mapping, on real moto streams, with fake handlers.

Each test gets its own table (and stream) on the session's moto server, writes items, and
drives the runner with ``drain()``; retries back off by milliseconds so every test is quick.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ripple_local.esm import CheckpointStore, RetryBackoff, StreamEventSourceMapping
from ripple_local.lambda_context import LambdaContextFactory

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator

FAST = RetryBackoff(initial_s=0.001, multiplier=2.0, maximum_s=0.01)
FUNCTION = "ripple-test-Consumer"


@dataclass
class Stream:
    table: str
    arn: str


@dataclass
class Queue:
    url: str
    arn: str


@pytest.fixture
def stream(aws_client: Callable[[str], Any]) -> Iterator[Stream]:
    dynamodb = aws_client("dynamodb")
    name = f"esm-{uuid.uuid4().hex[:10]}"
    table = dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    yield Stream(name, table["LatestStreamArn"])
    dynamodb.delete_table(TableName=name)


@pytest.fixture
def failure_queue(aws_client: Callable[[str], Any]) -> Queue:
    sqs = aws_client("sqs")
    url = sqs.create_queue(QueueName=f"esm-dlq-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Queue(url, arn)


@dataclass
class Recorder:
    """A fake handler: remembers every invocation, answers with ``respond`` (or raises)."""

    respond: Callable[[list[dict[str, Any]], int], Any] = lambda records, call: None
    calls: list[list[dict[str, Any]]] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)
    succeeded: list[list[str]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        records = event["Records"]
        self.calls.append(records)
        self.contexts.append(context)
        response = self.respond(records, len(self.calls))
        self.succeeded.append([pk(r) for r in records])
        return response

    def batches(self) -> list[list[str]]:
        return [[pk(r) for r in call] for call in self.calls]


def pk(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


def seq(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def put(aws_client: Callable[[str], Any], stream: Stream, *keys: str) -> None:
    """Write ``keys`` in this order, each once the previous one's record is in the stream.

    DynamoDB Streams orders records per item only; LocalStack forwards each write's record
    on a thread pool, so two quick writes of different items can land in either order. The
    tests below name positions across items, so each write waits for its record first.
    """
    dynamodb = aws_client("dynamodb")
    streams = aws_client("dynamodbstreams")
    for key in keys:
        before = stream_record_count(streams, stream)
        dynamodb.put_item(TableName=stream.table, Item={"pk": {"S": key}, "blob": {"B": b"\x01\x02"}})
        deadline = time.monotonic() + 10
        while stream_record_count(streams, stream) <= before:
            assert time.monotonic() < deadline, f"the record of {key} never reached the stream"
            time.sleep(0.01)


def stream_record_count(streams: Any, stream: Stream) -> int:
    """How many records the stream holds, over every shard, from TRIM_HORIZON."""
    count = 0
    for shard in streams.describe_stream(StreamArn=stream.arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator)
            count += len(page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return count


def runner_for(
    aws_client: Callable[[str], Any],
    stream: Stream,
    handler: Callable[[dict[str, Any], Any], Any],
    state_dir: Path,
    **properties: Any,
) -> StreamEventSourceMapping:
    props = {"Stream": stream.arn, "StartingPosition": "TRIM_HORIZON", "BatchSize": 10, **properties}
    return StreamEventSourceMapping(
        function_name=FUNCTION,
        handler=handler,
        stream_arn=stream.arn,
        properties=props,
        streams_client=aws_client("dynamodbstreams"),
        sqs_client=aws_client("sqs"),
        checkpoint_store=CheckpointStore(state_dir),
        context_factory=LambdaContextFactory(FUNCTION, timeout_s=30, memory_mb=256),
        retry_backoff=FAST,
    )


def failure_messages(aws_client: Callable[[str], Any], queue: Queue) -> list[dict[str, Any]]:
    sqs = aws_client("sqs")
    messages = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    )
    return [json.loads(m["Body"]) for m in messages]


def test_batches_arrive_in_order_with_lambda_shaped_records(
    aws_client: Callable[[str], Any], stream: Stream, tmp_path: Path
) -> None:
    # Given seven inserts, a modify and a remove on a streamed table
    put(aws_client, stream, *[f"k{i}" for i in range(7)])
    dynamodb = aws_client("dynamodb")
    dynamodb.put_item(TableName=stream.table, Item={"pk": {"S": "k0"}, "v": {"N": "2"}})
    dynamodb.delete_item(TableName=stream.table, Key={"pk": {"S": "k1"}})
    handler = Recorder()
    runner = runner_for(aws_client, stream, handler, tmp_path, BatchSize=4)

    # When the runner drains the stream
    handled = runner.drain()

    # Then nine records came in batches of at most four, strictly in stream order
    assert handled == 9
    assert [len(call) for call in handler.calls] == [4, 4, 1]
    records = [r for call in handler.calls for r in call]
    assert [int(seq(r)) for r in records] == sorted(int(seq(r)) for r in records)
    assert [r["eventName"] for r in records] == ["INSERT"] * 7 + ["MODIFY", "REMOVE"]
    # ... each shaped as Lambda delivers it
    first, modify, remove = records[0], records[7], records[8]
    assert first["eventVersion"] == "1.1" and first["eventSource"] == "aws:dynamodb"
    assert first["eventSourceARN"] == stream.arn and first["awsRegion"] == "us-east-1"
    assert isinstance(first["eventID"], str) and first["eventID"]
    image = first["dynamodb"]
    assert isinstance(image["ApproximateCreationDateTime"], int)
    assert abs(image["ApproximateCreationDateTime"] - time.time()) < 120
    assert image["Keys"] == {"pk": {"S": "k0"}}
    assert image["NewImage"] == {"pk": {"S": "k0"}, "blob": {"B": "AQI="}}  # base64, as in Lambda events
    assert image["StreamViewType"] == "NEW_AND_OLD_IMAGES" and image["SizeBytes"] > 0
    assert "OldImage" not in image
    assert modify["dynamodb"]["OldImage"]["pk"] == {"S": "k0"} and modify["dynamodb"]["NewImage"]["v"] == {
        "N": "2"
    }
    assert "NewImage" not in remove["dynamodb"] and remove["dynamodb"]["OldImage"]["pk"] == {"S": "k1"}
    json.dumps(records)  # plain JSON, like a real event
    # ... with a fresh Lambda context per invocation
    assert len({c.aws_request_id for c in handler.contexts}) == 3
    assert all(0 < c.get_remaining_time_in_millis() <= 30_000 for c in handler.contexts)
    assert handler.contexts[0].function_name == FUNCTION
    # ... and the checkpoint sits on the last record
    shards = aws_client("dynamodbstreams").describe_stream(StreamArn=stream.arn)["StreamDescription"][
        "Shards"
    ]
    assert runner.checkpoints.get(runner.mapping_id, shards[0]["ShardId"]) == seq(remove)
    assert runner.stats.snapshot() == {
        "batches": 3,
        "records_ok": 9,
        "records_failed": 0,
        "retries": 0,
        "bisections": 0,
        "sent_to_failure_queue": 0,
        "poll_errors": 0,
        "filtered": 0,
    }
    assert runner.drain() == 0  # nothing is delivered twice


@pytest.mark.parametrize(
    ("first_response", "retried_from"),
    [
        # the lowest reported sequence number wins, whatever the order of the list
        (
            lambda records: {
                "batchItemFailures": [
                    {"itemIdentifier": seq(records[3])},
                    {"itemIdentifier": seq(records[1])},
                ]
            },
            1,
        ),
        # an identifier that is empty or not in the batch fails the whole batch
        (lambda records: {"batchItemFailures": [{"itemIdentifier": ""}]}, 0),
        (lambda records: {"batchItemFailures": [{"itemIdentifier": "999"}]}, 0),
        (lambda records: {"batchItemFailures": [{"id": seq(records[2])}]}, 0),
    ],
    ids=["lowest-failed-record", "empty-identifier", "unknown-identifier", "wrong-key"],
)
def test_partial_batch_failure_retries_from_the_first_failed_record(
    aws_client: Callable[[str], Any],
    stream: Stream,
    tmp_path: Path,
    first_response: Callable[[list[dict[str, Any]]], Any],
    retried_from: int,
) -> None:
    # Given a handler that reports failures on its first invocation only
    put(aws_client, stream, *[f"k{i}" for i in range(5)])
    handler = Recorder(respond=lambda records, call: first_response(records) if call == 1 else None)
    runner = runner_for(
        aws_client,
        stream,
        handler,
        tmp_path,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        MaximumRetryAttempts=2,
    )
    # When the stream is drained
    runner.drain()
    # Then the retry starts at the first failed record, and everything is committed once
    keys = [f"k{i}" for i in range(5)]
    assert handler.batches() == [keys, keys[retried_from:]]
    assert runner.stats.retries == 1 and runner.stats.records_ok == 5 and runner.stats.records_failed == 0


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, "ok"])
def test_empty_responses_mean_success(
    aws_client: Callable[[str], Any], stream: Stream, tmp_path: Path, response: Any
) -> None:
    put(aws_client, stream, "a", "b")
    handler = Recorder(respond=lambda records, call: response)
    runner = runner_for(
        aws_client, stream, handler, tmp_path, FunctionResponseTypes=["ReportBatchItemFailures"]
    )
    runner.drain()
    assert handler.batches() == [["a", "b"]]


def test_bisect_isolates_a_poison_record_and_parks_it_on_the_failure_queue(
    aws_client: Callable[[str], Any], stream: Stream, failure_queue: Queue, tmp_path: Path
) -> None:
    # Given six records, the fourth of which always makes the handler raise
    put(aws_client, stream, *[f"k{i}" for i in range(6)])

    def respond(records: list[dict[str, Any]], call: int) -> None:
        if any(pk(r) == "k3" for r in records):
            raise ValueError("poison record")

    handler = Recorder(respond=respond)
    runner = runner_for(
        aws_client,
        stream,
        handler,
        tmp_path,
        MaximumRetryAttempts=2,
        BisectBatchOnFunctionError=True,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        DestinationConfig={"OnFailure": {"Destination": failure_queue.arn}},
    )

    # When the stream is drained
    runner.drain()

    # Then bisection isolated k3: the good records were delivered, in order
    assert handler.succeeded == [["k0", "k1", "k2"], ["k4", "k5"]]
    assert handler.batches() == [
        ["k0", "k1", "k2", "k3", "k4", "k5"],  # fails -> bisect
        ["k0", "k1", "k2"],  # ok
        ["k3", "k4", "k5"],  # fails -> bisect
        ["k3"],  # fails, then two retries
        ["k3"],
        ["k3"],
        ["k4", "k5"],  # the shard moves on after k3 is parked
    ]
    # ... and k3 alone reached the failure queue, described as Lambda describes it
    [message] = failure_messages(aws_client, failure_queue)
    poison_seq = seq(handler.calls[3][0])
    info = message["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == poison_seq
    assert info["streamArn"] == stream.arn and info["shardId"].startswith("shardId-")
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    assert info["approximateArrivalOfLastRecord"].endswith("Z")
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3  # first try + MaximumRetryAttempts
    assert message["requestContext"]["functionArn"].endswith(f":function:{FUNCTION}")
    assert message["requestContext"]["requestId"] == handler.contexts[5].aws_request_id
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert message["version"] == "1.0" and message["timestamp"].endswith("Z")
    assert runner.stats.bisections == 2 and runner.stats.retries == 2
    assert runner.stats.sent_to_failure_queue == 1 and runner.stats.records_failed == 1
    assert runner.stats.records_ok == 5

    # And the shard is not blocked: a later record flows through
    put(aws_client, stream, "k6")
    assert runner.drain() == 1
    assert handler.batches()[-1] == ["k6"]


def test_exhausted_partial_failure_parks_the_rest_of_the_batch(
    aws_client: Callable[[str], Any], stream: Stream, failure_queue: Queue, tmp_path: Path
) -> None:
    # Given a handler that always reports the third record failed, without bisection
    put(aws_client, stream, *[f"k{i}" for i in range(5)])
    handler = Recorder(
        respond=lambda records, call: {
            "batchItemFailures": [{"itemIdentifier": seq(r)} for r in records if pk(r) == "k2"]
        }
    )
    runner = runner_for(
        aws_client,
        stream,
        handler,
        tmp_path,
        MaximumRetryAttempts=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        DestinationConfig={"OnFailure": {"Destination": failure_queue.arn}},
    )
    # When drained
    runner.drain()
    # Then k0, k1 were committed, k2..k4 retried once and then parked as one batch
    assert handler.batches() == [["k0", "k1", "k2", "k3", "k4"], ["k2", "k3", "k4"]]
    [message] = failure_messages(aws_client, failure_queue)
    info = message["DDBStreamBatchInfo"]
    assert info["batchSize"] == 3
    assert info["startSequenceNumber"] == seq(handler.calls[1][0])
    assert info["endSequenceNumber"] == seq(handler.calls[1][2])
    assert message["requestContext"]["approximateInvokeCount"] == 2
    assert message["responseContext"]["functionError"] == ""  # the invocation itself succeeded
    assert runner.stats.records_ok == 2 and runner.stats.records_failed == 3


def test_without_a_destination_exhausted_records_are_dropped_and_the_shard_moves_on(
    aws_client: Callable[[str], Any], stream: Stream, tmp_path: Path
) -> None:
    put(aws_client, stream, "bad", "good")

    def respond(records: list[dict[str, Any]], call: int) -> None:
        if pk(records[0]) == "bad":
            raise RuntimeError("nope")

    handler = Recorder(respond=respond)
    runner = runner_for(aws_client, stream, handler, tmp_path, BatchSize=1, MaximumRetryAttempts=0)
    runner.drain()
    assert handler.batches() == [["bad"], ["good"]]
    assert runner.stats.records_failed == 1 and runner.stats.records_ok == 1


def test_a_restarted_runner_resumes_from_its_checkpoint(
    aws_client: Callable[[str], Any], stream: Stream, tmp_path: Path
) -> None:
    # Given a runner that processed three records and was stopped
    put(aws_client, stream, "a", "b", "c")
    first = Recorder()
    runner_for(aws_client, stream, first, tmp_path).drain()
    assert first.batches() == [["a", "b", "c"]]
    # When two more records arrive and a new runner starts on the same state directory
    put(aws_client, stream, "d", "e")
    second = Recorder()
    resumed = runner_for(aws_client, stream, second, tmp_path)
    resumed.drain()
    # Then it delivers only the new records: nothing twice, nothing lost
    assert second.batches() == [["d", "e"]]
    # (while a runner without the checkpoints would replay from TRIM_HORIZON)
    fresh = Recorder()
    runner_for(aws_client, stream, fresh, tmp_path / "elsewhere").drain()
    assert fresh.batches() == [["a", "b", "c", "d", "e"]]


def test_latest_starts_after_existing_records(
    aws_client: Callable[[str], Any], stream: Stream, tmp_path: Path
) -> None:
    put(aws_client, stream, "old")
    handler = Recorder()
    runner = runner_for(aws_client, stream, handler, tmp_path, StartingPosition="LATEST")
    assert runner.poll_once() == 0
    put(aws_client, stream, "new")
    runner.drain()
    assert handler.batches() == [["new"]]


def test_the_polling_thread_delivers_and_stops(
    aws_client: Callable[[str], Any], stream: Stream, tmp_path: Path
) -> None:
    # Given a started runner
    handler = Recorder()
    runner = runner_for(aws_client, stream, handler, tmp_path)
    runner.start()
    try:
        # When records are written
        put(aws_client, stream, "x", "y", "z")
        deadline = time.monotonic() + 5
        while sum(len(c) for c in handler.calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        # Then the thread delivered them, and draining alongside it adds nothing
        assert [k for call in handler.batches() for k in call] == ["x", "y", "z"]
        assert runner.drain() == 0
    finally:
        runner.stop()
    assert not runner.running


def test_filter_criteria_deliver_only_matching_records_and_move_past_the_rest(
    aws_client: Callable[[str], Any], stream: Stream, tmp_path: Path
) -> None:
    """FilterCriteria as Lambda applies them (issue 11: the fan-out function is not invoked
    for like-count MODIFY records): non-matching records never reach the handler, and the
    checkpoint moves past them, also when they end a batch."""
    put(aws_client, stream, "a", "b")
    aws_client("dynamodb").put_item(
        TableName=stream.table, Item={"pk": {"S": "a"}, "n": {"N": "1"}}
    )  # MODIFY
    handler = Recorder()
    pattern = json.dumps({"eventName": ["INSERT", "REMOVE"]})
    runner = runner_for(
        aws_client, stream, handler, tmp_path, FilterCriteria={"Filters": [{"Pattern": pattern}]}
    )
    runner.drain()
    assert handler.batches() == [["a", "b"]]
    assert [r["eventName"] for r in handler.calls[0]] == ["INSERT", "INSERT"]
    assert runner.stats.filtered == 1
    # The trailing MODIFY was checkpointed: a restarted runner has nothing left to deliver.
    again = Recorder()
    runner_for(
        aws_client, stream, again, tmp_path, FilterCriteria={"Filters": [{"Pattern": pattern}]}
    ).drain()
    assert again.batches() == []
    # Content filters on the image work too (Lambda's DynamoDB JSON shape).
    put(aws_client, stream, "keep-1", "drop-1")
    only = json.dumps({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "keep"}]}}}})
    chosen = Recorder()
    runner_for(
        aws_client, stream, chosen, tmp_path / "other", FilterCriteria={"Filters": [{"Pattern": only}]}
    ).drain()
    assert chosen.batches() == [["keep-1"]]
