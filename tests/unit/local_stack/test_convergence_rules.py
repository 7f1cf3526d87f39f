"""The rules behind the convergence tools, without services: what a cached feed must look
like, how an on-failure record is read, and which stream records a replay re-reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ripple.cache.feed_cache import SENTINEL
from ripple.domain import FeedEntry
from ripple_local.convergence import check_cached_feed, member, member_post_id
from ripple_local.esm import MappingConfig, lane_of
from ripple_local.replay import FailedBatch, FailureReplayer, read_stream_batch

# Members as the cache stores them; ids sort by time (c newest).
A, B, C = "01A:u1", "01B:u2", "01C:u1"


@pytest.mark.parametrize(
    ("members", "missing", "extra", "misordered"),
    [
        pytest.param([C, B, A, SENTINEL], (), (), (), id="complete and exact"),
        pytest.param([C, B], (), (), (), id="a prefix: older items may be left to DynamoDB"),
        pytest.param([C, A], (B,), (), (), id="a gap inside the cached range"),
        pytest.param([C, A, SENTINEL], (B,), (), (), id="complete but missing one"),
        pytest.param([B, A], (C,), (), (), id="the newest is missing"),
        pytest.param([C, "01Z:u9", B], (), ("01Z:u9",), ("01Z:u9",), id="a stranger, out of order"),
        pytest.param([B, C, A], (), (), (C,), id="a wrong score puts one first"),
        pytest.param([SENTINEL], (C, B, A), (), (), id="cached as empty"),
    ],
)
def test_a_cached_feed_must_be_a_contiguous_newest_first_prefix(
    members: list[str], missing: tuple[str, ...], extra: tuple[str, ...], misordered: tuple[str, ...]
) -> None:
    check = check_cached_feed(members, [A, B, C])
    assert (check.missing, check.extra, check.misordered) == (missing, extra, misordered)
    assert check.cached and check.ok == (not (missing or extra or misordered))


# Post 01AA by u1, placed by u3's repost 01D: above every other item although its post is older.
R = "01D:u1:01AA:u3"


@pytest.mark.parametrize(
    ("members", "missing", "misordered"),
    [
        pytest.param([R, B, A, SENTINEL], (), (), id="a repost's member above older posts"),
        pytest.param([R], (), (), id="a prefix of one repost-placed item"),
        pytest.param([B, A], (R,), (), id="the newest placement is missing"),
        pytest.param([B, R, A], (), (R,), id="a repost's member out of order"),
    ],
)
def test_a_cached_feed_is_a_prefix_in_placement_order(
    members: list[str], missing: tuple[str, ...], misordered: tuple[str, ...]
) -> None:
    check = check_cached_feed(members, [A, B, R])
    assert (check.missing, check.extra, check.misordered) == (missing, (), misordered)


def test_members_name_the_placement_first() -> None:
    original = FeedEntry("r", "01AA", "u1", 0)
    reposted = FeedEntry("r", "01AA", "u1", 0, placed="01D", reposted_by="u3")
    assert (member(original), member(reposted)) == ("01AA:u1", R)
    assert member_post_id(member(original)) == member_post_id(R) == "01AA"


def test_no_members_means_not_cached() -> None:
    check = check_cached_feed([], [A])
    assert not check.cached and check.ok


def on_failure_message(**info: Any) -> dict[str, Any]:
    body = {
        "requestContext": {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:st-FanoutFunction"},
        "DDBStreamBatchInfo": {
            "shardId": "shard-1",
            "startSequenceNumber": "100",
            "endSequenceNumber": "300",
            "batchSize": 3,
            "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
            **info,
        },
    }
    return {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": json.dumps(body)}


def test_an_on_failure_record_names_the_function_and_the_records() -> None:
    batch = FailedBatch.parse("q", on_failure_message())
    assert (batch.function_name, batch.shard_id, batch.start_sequence, batch.end_sequence) == (
        "st-FanoutFunction",
        "shard-1",
        "100",
        "300",
    )
    assert batch.batch_size == 3


def test_anything_else_on_the_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="not a DynamoDB stream on-failure record"):
        FailedBatch.parse("q", {"MessageId": "m", "ReceiptHandle": "r", "Body": '{"hello": 1}'})


class FakeStreams:
    """An open shard: a fresh iterator first answers empty (as open shards may), then one
    record per GetRecords call from its position, then empty answers for ever."""

    def __init__(self, sequence_numbers: list[int], records: dict[int, dict[str, Any]] | None = None) -> None:
        self.sequence_numbers = sequence_numbers
        self.records = records or {}  # sequence number -> eventName and Keys, where they matter
        self.iterator_request: dict[str, Any] = {}

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        self.iterator_request = request
        return {"ShardIterator": f"fresh:{self.sequence_numbers.index(int(request['SequenceNumber']))}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        state, _, position = ShardIterator.partition(":")
        at = int(position)
        if state == "fresh" or at >= len(self.sequence_numbers):
            return {"Records": [], "NextShardIterator": f"ready:{at}"}
        n = str(self.sequence_numbers[at])
        shape = {"eventName": "INSERT", "Keys": {}, **self.records.get(int(n), {})}
        record = {
            "eventID": n,
            "eventName": shape["eventName"],
            "dynamodb": {"SequenceNumber": n, "Keys": shape["Keys"]},
        }
        return {"Records": [record], "NextShardIterator": f"ready:{at + 1}"}


def test_a_replay_rereads_exactly_the_failed_range_lambda_shaped() -> None:
    streams = FakeStreams([100, 200, 300, 400])
    records = read_stream_batch(
        streams, "arn:aws:dynamodb:eu-west-1:1:table/t/stream/x", "shard-1", "100", "300"
    )
    assert [r["dynamodb"]["SequenceNumber"] for r in records] == ["100", "200", "300"]
    assert streams.iterator_request["ShardIteratorType"] == "AT_SEQUENCE_NUMBER"
    assert streams.iterator_request["SequenceNumber"] == "100"
    assert records[0]["eventSource"] == "aws:dynamodb" and records[0]["awsRegion"] == "eu-west-1"


class FakeSqs:
    """One queue: receive hands out each message once per run; deletes and releases recorded."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.pending = list(messages)
        self.deleted: list[str] = []
        self.released: list[str] = []

    def receive_message(self, **request: Any) -> dict[str, Any]:
        batch, self.pending = self.pending[:10], self.pending[10:]
        return {"Messages": batch} if batch else {}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:
        self.deleted.append(ReceiptHandle)

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        self.released.append(ReceiptHandle)


STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"


def failure(receipt: str, function: str, start: int) -> dict[str, Any]:
    message = on_failure_message(
        startSequenceNumber=str(start), endSequenceNumber=str(start), batchSize=1, streamArn=STREAM
    )
    body = json.loads(message["Body"])
    body["requestContext"]["functionArn"] = f"arn:aws:lambda:us-east-1:1:function:{function}"
    return {"MessageId": receipt, "ReceiptHandle": receipt, "Body": json.dumps(body)}


def test_a_replay_keeps_each_functions_shard_in_order() -> None:
    sqs = FakeSqs(
        [
            failure("fan-later", "st-FanoutFunction", 300),  # received first, replayed second
            failure("fan-first", "st-FanoutFunction", 100),
            failure("cache", "st-CacheRefresherFunction", 200),
            failure("stranger", "other-stack-FanoutFunction", 100),
        ]
    )
    invoked: list[tuple[str, str]] = []

    def handler(function_id: str) -> Any:
        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            sequence = event["Records"][0]["dynamodb"]["SequenceNumber"]
            invoked.append((function_id, sequence))
            failing = function_id == "FanoutFunction" and sequence == "100"
            return {"batchItemFailures": [{"itemIdentifier": sequence}] if failing else []}

        return handle

    replayer = FailureReplayer(
        sqs=sqs,
        streams=FakeStreams([100, 200, 300]),
        queue_urls=["q"],
        stack_name="st",
        handlers=handler,
        contexts={"FanoutFunction": lambda: None, "CacheRefresherFunction": lambda: None},
        streams_of={"FanoutFunction": frozenset({STREAM}), "CacheRefresherFunction": frozenset({STREAM})},
    )
    results = {r.message_id: r for r in replayer.replay()}

    assert invoked == [("CacheRefresherFunction", "200"), ("FanoutFunction", "100")]
    assert sqs.deleted == ["cache"]
    assert "still fail" in results["fan-first"].detail
    assert "held back" in results["fan-later"].detail
    assert "not part of stack 'st'" in results["stranger"].detail
    assert sorted(sqs.released) == ["fan-first", "fan-later", "stranger"]


def test_a_replay_sends_only_the_parked_batchs_own_records_of_its_range() -> None:
    """With ParallelizationFactor 2 a batch holds one lane's records, and FilterCriteria may
    have kept others out: the range 100..500 holds more records than the batch did."""
    lanes: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    n = 0
    while min(len(v) for v in lanes.values()) < 2:
        item = {"pk": {"S": f"u{n}"}}
        lanes[lane_of({"dynamodb": {"Keys": item}}, 2)].append(item)
        n += 1
    (a, a2), (b, _) = lanes[0], lanes[1]
    streams = FakeStreams(
        [100, 200, 300, 400, 500],
        {
            100: {"Keys": a},
            200: {"Keys": b},  # another lane
            300: {"Keys": a2, "eventName": "MODIFY"},  # filtered out
            400: {"Keys": b},
            500: {"Keys": a2},
        },
    )
    message = on_failure_message(
        startSequenceNumber="100", endSequenceNumber="500", batchSize=2, streamArn=STREAM
    )
    invoked: list[list[str]] = []

    def handler(function_id: str) -> Any:
        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            invoked.append([r["dynamodb"]["SequenceNumber"] for r in event["Records"]])
            return {"batchItemFailures": []}

        return handle

    config = MappingConfig.from_properties(
        {
            "Stream": STREAM,
            "ParallelizationFactor": 2,
            "FilterCriteria": {"Filters": [{"Pattern": '{"eventName": ["INSERT", "REMOVE"]}'}]},
        }
    )
    replayer = FailureReplayer(
        sqs=FakeSqs([{**message, "MessageId": "m", "ReceiptHandle": "m"}]),
        streams=streams,
        queue_urls=["q"],
        stack_name="st",
        handlers=handler,
        contexts={"FanoutFunction": lambda: None},
        streams_of={"FanoutFunction": frozenset({STREAM})},
        configs={("FanoutFunction", STREAM): config},
    )
    [result] = replayer.replay()
    assert result.replayed, result.describe()
    assert invoked == [["100", "500"]]
