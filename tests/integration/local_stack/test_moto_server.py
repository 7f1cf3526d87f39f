"""ripple_local.moto_server as the stack runs it: a cancelled transaction on moto leaves its
stream as DynamoDB would (no record of the writes it undid, sequence numbers unique)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ripple_local.aws import client
from ripple_local.processes import EmulatorProcess

pytestmark = [pytest.mark.integration]


@contextmanager
def moto_server(state_dir: Path) -> Iterator[str]:
    process = EmulatorProcess.start_on_free_port(state_dir=state_dir)
    try:
        yield process.url
    finally:
        process.stop()


def test_a_cancelled_transaction_leaves_no_stream_record_and_numbers_stay_unique(tmp_path: Path) -> None:
    # moto itself would stream b (written before the failed check) to iterators opened
    # before, and number c like b, so a reader past b would skip c
    with moto_server(tmp_path) as url:
        dynamodb = client("dynamodb", url)
        streams = client("dynamodbstreams", url)
        arn = dynamodb.create_table(
            TableName="t",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        )["TableDescription"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]

        def records(iterator: str) -> list[tuple[str, str]]:
            page = streams.get_records(ShardIterator=iterator)["Records"]
            return [(r["dynamodb"]["Keys"]["pk"]["S"], r["dynamodb"]["SequenceNumber"]) for r in page]

        dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}})
        opened_before = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")
        # When a transaction writes b, then fails its second condition
        with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
            dynamodb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}}}},
                    {
                        "ConditionCheck": {
                            "TableName": "t",
                            "Key": {"pk": {"S": "missing"}},
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                ]
            )
        dynamodb.put_item(TableName="t", Item={"pk": {"S": "c"}})

        # Then the stream holds a and c, numbered apart, and an iterator from before sees c only
        every = records(
            streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
                "ShardIterator"
            ]
        )
        assert [key for key, _ in every] == ["a", "c"]
        assert len({number for _, number in every}) == 2
        assert records(opened_before["ShardIterator"]) == [every[1]]
        assert "b" not in {i["pk"]["S"] for i in dynamodb.scan(TableName="t")["Items"]}
