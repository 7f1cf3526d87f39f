"""The fault proxy's injected behaviours, as a boto3 client sees them, on the session's DynamoDB.

Each injected answer must be what DynamoDB itself sends (status, ``__type``, fields), or the
tests that rely on it would test a fiction: botocore has to parse a conflict into
``CancellationReasons``, a partial batch into ``UnprocessedKeys``, and an index must really
hide a fresh item for the lag and show it afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ripple_local.aws import Endpoints, client
from ripple_local.fault_proxy import FORWARD, TRANSACTION_CONFLICT, UNPROCESSED, FaultPlan, FaultProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(emulator: Endpoints) -> Iterator[FaultProxy]:
    with FaultProxy(emulator.dynamodb) as running:
        yield running


@pytest.fixture
def table(emulator: Endpoints) -> Iterator[str]:
    """A table with a global secondary index on ``g``."""
    name = f"fp-{uuid.uuid4().hex[:8]}"
    dynamodb = client("dynamodb", emulator)
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    yield name
    dynamodb.delete_table(TableName=name)


def _item(key: str, group: str = "grp") -> dict[str, Any]:
    return {"pk": {"S": key}, "g": {"S": group}}


def test_a_conflict_reaches_botocore_as_dynamodb_sends_it(proxy: FaultProxy, table: str) -> None:
    dynamodb = client("dynamodb", proxy.url)
    proxy.plan = FaultPlan.only({"TransactWriteItems"}, pattern="X")
    items = [
        {"Put": {"TableName": table, "Item": _item("a")}},
        {"Put": {"TableName": table, "Item": _item("b")}},
    ]
    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(TransactItems=items)
    error = cancelled.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in error["CancellationReasons"]] == ["TransactionConflict", "None"]
    assert "Item" not in dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}}, ConsistentRead=True)
    # other operations are not affected by a conflict plan
    dynamodb.put_item(TableName=table, Item=_item("c"))
    outcomes = [(c.operation, c.outcome) for c in proxy.calls(dynamodb_only=True)]
    assert outcomes == [
        ("TransactWriteItems", TRANSACTION_CONFLICT),
        ("GetItem", FORWARD),
        ("PutItem", FORWARD),
    ]


def test_half_a_batch_comes_back_unprocessed(proxy: FaultProxy, table: str) -> None:
    dynamodb = client("dynamodb", proxy.url)
    proxy.plan = FaultPlan.only({"BatchWriteItem", "BatchGetItem"}, pattern="U")
    written = dynamodb.batch_write_item(
        RequestItems={table: [{"PutRequest": {"Item": _item(f"k{i}")}} for i in range(4)]}
    )
    held = written["UnprocessedItems"][table]
    assert [r["PutRequest"]["Item"]["pk"]["S"] for r in held] == ["k2", "k3"]

    keys = [{"pk": {"S": f"k{i}"}} for i in range(4)]
    read = dynamodb.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
    assert sorted(i["pk"]["S"] for i in read["Responses"][table]) == ["k0", "k1"]
    unprocessed = read["UnprocessedKeys"][table]
    assert unprocessed["Keys"] == keys[2:] and unprocessed["ConsistentRead"] is True  # the request's options
    single = dynamodb.batch_get_item(RequestItems={table: {"Keys": keys[:1]}})
    assert single["Responses"][table] == [] and single["UnprocessedKeys"][table]["Keys"] == keys[:1]
    assert {c.outcome for c in proxy.calls(dynamodb_only=True)} == {UNPROCESSED}


def test_an_index_does_not_show_a_fresh_item_until_the_lag_has_passed(
    emulator: Endpoints, table: str
) -> None:
    now = [0.0]  # the proxy's clock: only the test moves it, however slow the machine
    with FaultProxy(emulator.dynamodb, clock=lambda: now[0]) as proxy:
        dynamodb = client("dynamodb", proxy.url)
        query = {"TableName": table, "IndexName": "by_g", "KeyConditionExpression": "g = :g"}
        query["ExpressionAttributeValues"] = {":g": {"S": "grp"}}
        dynamodb.put_item(TableName=table, Item=_item("old"))  # written before the lag is on

        proxy.plan = FaultPlan(gsi_lag_s=1.0)
        dynamodb.put_item(TableName=table, Item=_item("new"))
        dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": _item("tx")}}])
        dynamodb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": _item("batch")}}]})
        now[0] = 0.99
        lagging = dynamodb.query(**query)
        # the table itself is up to date at once
        assert "Item" in dynamodb.get_item(TableName=table, Key={"pk": {"S": "new"}}, ConsistentRead=True)

        now[0] = 1.0
        caught_up = dynamodb.query(**query)
    assert [i["pk"]["S"] for i in lagging["Items"]] == ["old"] and lagging["Count"] == 1
    assert sorted(i["pk"]["S"] for i in caught_up["Items"]) == ["batch", "new", "old", "tx"]


def test_a_request_is_recorded_before_its_answer_reaches_the_caller(
    proxy: FaultProxy, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a proxy whose bookkeeping is slow (as a loaded machine makes it)
    record = proxy._record

    def slow_record(call: Any) -> None:
        time.sleep(0.3)
        record(call)

    monkeypatch.setattr(proxy, "_record", slow_record)
    dynamodb = client("dynamodb", proxy.url)
    # When a caller has its answer, then the request is already in calls(): a test that clears
    # the record after its set-up and then injects faults never sees the set-up's request late
    dynamodb.put_item(TableName=table, Item=_item("recorded"))
    assert [c.operation for c in proxy.calls(dynamodb_only=True)][-1:] == ["PutItem"]
    proxy.clear()
    dynamodb.get_item(TableName=table, Key={"pk": {"S": "recorded"}})
    assert [c.operation for c in proxy.calls(dynamodb_only=True)] == ["GetItem"]
