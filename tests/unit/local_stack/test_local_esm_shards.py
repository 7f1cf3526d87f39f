"""Shard lifecycle in the runner, against an in-memory DynamoDB Streams twin.

moto keeps one never-closing shard per stream, so shard splits (parents closing, children
starting after them), paginated DescribeStream and expired iterators are driven here with a
small fake of the three Streams calls the runner makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ripple_local.esm import CheckpointStore, RetryBackoff, StreamEventSourceMapping
from ripple_local.lambda_context import LambdaContextFactory

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024-01-01T00:00:00.000"


@dataclass
class FakeShard:
    parent: str | None
    sequence_numbers: list[int]
    closed: bool = False


@dataclass
class FakeStreams:
    """DescribeStream (one shard per page), GetShardIterator and GetRecords over fixed shards."""

    shards: dict[str, FakeShard]
    expire_next_get: bool = False
    calls: list[str] = field(default_factory=list)

    def describe_stream(self, StreamArn: str, ExclusiveStartShardId: str | None = None) -> dict[str, Any]:
        self.calls.append("describe_stream")
        ids = list(self.shards)
        start = ids.index(ExclusiveStartShardId) + 1 if ExclusiveStartShardId else 0
        page = ids[start : start + 1]
        description: dict[str, Any] = {
            "Shards": [
                {"ShardId": i, **({"ParentShardId": p} if (p := self.shards[i].parent) else {})} for i in page
            ]
        }
        if start + 1 < len(ids):
            description["LastEvaluatedShardId"] = page[-1]
        return {"StreamDescription": description}

    def get_shard_iterator(
        self, StreamArn: str, ShardId: str, ShardIteratorType: str, SequenceNumber: str | None = None
    ) -> dict[str, str]:
        numbers = self.shards[ShardId].sequence_numbers
        if ShardIteratorType == "TRIM_HORIZON":
            position = 0
        elif ShardIteratorType == "LATEST":
            position = len(numbers)
        else:
            position = numbers.index(int(str(SequenceNumber))) + 1
        return {"ShardIterator": f"{ShardId}|{position}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        if self.expire_next_get:
            self.expire_next_get = False
            raise ClientError({"Error": {"Code": "ExpiredIteratorException", "Message": "old"}}, "GetRecords")
        shard_id, position_text = ShardIterator.split("|")
        shard, position = self.shards[shard_id], int(position_text)
        chosen = shard.sequence_numbers[position : position + Limit]
        records = [
            {
                "eventID": f"e{n}",
                "eventName": "INSERT",
                "dynamodb": {
                    "ApproximateCreationDateTime": datetime(2024, 1, 1, tzinfo=UTC),
                    "Keys": {"pk": {"S": f"k{n}"}},
                    "SequenceNumber": str(n),
                    "SizeBytes": 10,
                    "StreamViewType": "KEYS_ONLY",
                },
            }
            for n in chosen
        ]
        end = position + len(chosen)
        finished = shard.closed and end >= len(shard.sequence_numbers)
        return {"Records": records, "NextShardIterator": None if finished else f"{shard_id}|{end}"}


def runner(streams: FakeStreams, seen: list[list[int]], state_dir: Path) -> StreamEventSourceMapping:
    def handler(event: dict[str, Any], context: Any) -> None:
        seen.append([int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"]])

    return StreamEventSourceMapping(
        function_name="fn",
        handler=handler,
        stream_arn=ARN,
        properties={"Stream": ARN, "StartingPosition": "TRIM_HORIZON", "BatchSize": 10},
        streams_client=streams,
        sqs_client=None,
        checkpoint_store=CheckpointStore(state_dir),
        context_factory=LambdaContextFactory("fn"),
        retry_backoff=RetryBackoff(0.001, 2.0, 0.01),
    )


def test_children_start_only_after_their_parent_shard_is_finished(tmp_path: Path) -> None:
    # Given a closed parent shard listed after its open child (order in DescribeStream is not a promise)
    streams = FakeStreams(
        {
            "shard-child": FakeShard(parent="shard-parent", sequence_numbers=[30, 40]),
            "shard-parent": FakeShard(parent=None, sequence_numbers=[10, 20], closed=True),
        }
    )
    seen: list[list[int]] = []
    mapping = runner(streams, seen, tmp_path)
    # When the runner drains
    mapping.drain()
    # Then the parent's records come first, the parent is remembered as finished, then the child
    assert seen == [[10, 20], [30, 40]]
    assert mapping.checkpoints.is_ended(mapping.mapping_id, "shard-parent")
    assert mapping.checkpoints.get(mapping.mapping_id, "shard-child") == "40"


def test_a_restarted_runner_skips_finished_shards_and_resumes_children(tmp_path: Path) -> None:
    streams = FakeStreams(
        {
            "shard-parent": FakeShard(parent=None, sequence_numbers=[10, 20], closed=True),
            "shard-child": FakeShard(parent="shard-parent", sequence_numbers=[30, 40]),
        }
    )
    runner(streams, [], tmp_path).drain()
    streams.shards["shard-child"].sequence_numbers.append(50)
    seen: list[list[int]] = []
    runner(streams, seen, tmp_path).drain()
    assert seen == [[50]]


def test_an_expired_iterator_is_reopened_from_the_checkpoint(tmp_path: Path) -> None:
    streams = FakeStreams({"shard-0": FakeShard(parent=None, sequence_numbers=[1, 2])})
    seen: list[list[int]] = []
    mapping = runner(streams, seen, tmp_path)
    mapping.drain()
    streams.shards["shard-0"].sequence_numbers.append(3)
    streams.expire_next_get = True
    mapping.drain()
    assert seen == [[1, 2], [3]]
