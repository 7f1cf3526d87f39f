"""The emulator's own write ceiling, measured with bare boto3 loops in the same run.

Ripple's fan-out is compared with what the emulator can do at all: BatchWriteItem (25 items)
and PutItem in a tight loop against a scratch table with the feed table's key schema and
stream setting (a stream costs the emulator a record per write), so the comparison is
like for like. The scratch table is deleted afterwards.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import boto3
from botocore.config import Config

from bench.config import REPO_ROOT

_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=30, max_pool_connections=8)


def dynamodb_client(endpoint_url: str) -> Any:
    """A low-level DynamoDB client on the emulator, with dummy credentials."""
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=_CONFIG,
    )


def table_shape(logical_id: str) -> dict[str, Any]:
    """CreateTable arguments (keys, indexes, stream) of a template.yaml table, on demand."""
    from ripple_local.cfn import load_template

    props = load_template(REPO_ROOT / "template.yaml")["Resources"][logical_id]["Properties"]
    shape: dict[str, Any] = {
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
    }
    if props.get("GlobalSecondaryIndexes"):
        shape["GlobalSecondaryIndexes"] = [
            {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
            for i in props["GlobalSecondaryIndexes"]
        ]
    if props.get("StreamSpecification"):
        shape["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": props["StreamSpecification"]["StreamViewType"],
        }
    return shape


def feed_table_shape() -> dict[str, Any]:
    """template.yaml's FeedTable (keys and stream)."""
    return table_shape("FeedTable")


def _item(reader: str, n: int) -> dict[str, Any]:
    post = f"01BENCH{n:019d}"
    return {
        "user_id": {"S": reader},
        "post_id": {"S": post},
        "author_id": {"S": "01BENCHAUTHOR00000000000000"[:26]},
        "created_at": {"N": str(1_700_000_000_000 + n)},
    }


def measure_ceiling(endpoint_url: str, seconds: float, threads: int = 1) -> dict[str, Any]:
    """Items/s through BatchWriteItem and PutItem/s, each from ``threads`` clients."""
    client = dynamodb_client(endpoint_url)
    table = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **feed_table_shape())
    client.get_waiter("table_exists").wait(TableName=table)
    try:
        batch = _loop(endpoint_url, table, seconds, threads, batch=True)
        single = _loop(endpoint_url, table, seconds / 2, threads, batch=False)
    finally:
        client.delete_table(TableName=table)
    return {
        "threads": threads,
        "batch_items_per_s": batch["items"] / batch["elapsed"],
        "batch_calls_per_s": batch["calls"] / batch["elapsed"],
        "batch_call_latencies": batch["latencies"],
        "put_items_per_s": single["items"] / single["elapsed"],
        "put_latencies": single["latencies"],
        "seconds": seconds,
    }


def _loop(endpoint_url: str, table: str, seconds: float, threads: int, *, batch: bool) -> dict[str, Any]:
    totals = {"items": 0, "calls": 0}
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.2

    def run(worker: int) -> None:
        client = dynamodb_client(endpoint_url)
        reader = f"01BENCHREADER{os.getpid():06d}{worker:07d}"[:26]
        n = worker * 10_000_000
        while time.monotonic() < start:
            time.sleep(0.001)
        while time.monotonic() < start + seconds:
            t = time.monotonic()
            if batch:
                requests = [{"PutRequest": {"Item": _item(reader, n + i)}} for i in range(25)]
                response = client.batch_write_item(RequestItems={table: requests})
                written = 25 - len((response.get("UnprocessedItems") or {}).get(table) or [])
                n += 25
            else:
                client.put_item(TableName=table, Item=_item(reader, n))
                written = 1
                n += 1
            elapsed = time.monotonic() - t
            with lock:
                totals["items"] += written
                totals["calls"] += 1
                latencies.append(elapsed)

    workers = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {**totals, "elapsed": seconds, "latencies": latencies}


def item_count(endpoint_url: str, table: str) -> int:
    """Items in a table, as the emulator reports them."""
    return int(dynamodb_client(endpoint_url).describe_table(TableName=table)["Table"].get("ItemCount", 0))


def measure_transactions(endpoint_url: str, seconds: float, posts: int, users: int) -> dict[str, Any]:
    """TransactWriteItems/s shaped like a post's (put the post, ADD to its author's post_count),
    one boto3 client, on scratch copies of the posts and users tables holding ``posts`` and
    ``users`` items: moto deep-copies every table named in a transaction (to roll back), so a
    transaction's cost grows with the tables, and the fair reference is equally large tables."""
    client = dynamodb_client(endpoint_url)
    suffix = uuid.uuid4().hex[:8]
    posts_table, users_table = f"bench-posts-{suffix}", f"bench-users-{suffix}"
    client.create_table(TableName=posts_table, BillingMode="PAY_PER_REQUEST", **table_shape("PostsTable"))
    client.create_table(TableName=users_table, BillingMode="PAY_PER_REQUEST", **table_shape("UsersTable"))
    for table in (posts_table, users_table):
        client.get_waiter("table_exists").wait(TableName=table)
    try:
        author = "01BENCHAUTHOR0000000000000"
        user_rows = [_user(f"01BENCHUSER{n:015d}") for n in range(max(1, users) - 1)] + [_user(author)]
        _fill(client, users_table, user_rows)
        _fill(client, posts_table, [_post(author, n) for n in range(posts)])
        latencies: list[float] = []
        n = posts
        started = time.monotonic()
        while time.monotonic() < started + seconds:
            t = time.monotonic()
            client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": posts_table,
                            "Item": _post(author, n),
                            "ConditionExpression": "attribute_not_exists(post_id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": users_table,
                            "Key": {"user_id": {"S": author}},
                            "UpdateExpression": "ADD post_count :one",
                            "ConditionExpression": "attribute_exists(user_id)",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )
            latencies.append(time.monotonic() - t)
            n += 1
        elapsed = time.monotonic() - started
    finally:
        client.delete_table(TableName=posts_table)
        client.delete_table(TableName=users_table)
    return {"posts": posts, "users": users, "per_s": len(latencies) / elapsed, "latencies": latencies}


def _fill(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        client.batch_write_item(RequestItems={table: requests})


def _user(user_id: str) -> dict[str, Any]:
    return {
        "user_id": {"S": user_id},
        "username": {"S": f"u{user_id[-10:].lower()}"},
        "password_hash": {"S": "scrypt$16384$8$1$" + "x" * 24 + "$" + "y" * 44},
        "created_at": {"N": "1700000000000"},
        "follower_count": {"N": "8"},
        "following_count": {"N": "8"},
        "post_count": {"N": "0"},
    }


def _post(author: str, n: int) -> dict[str, Any]:
    return {
        "author_id": {"S": author},
        "post_id": {"S": f"01BENCHPOST{n:015d}"},
        "text": {"S": f"bench post at 10/s #{n}"},
        "created_at": {"N": str(1_700_000_000_000 + n)},
    }


def measure_follower_queries(endpoint_url: str, seconds: float, follows: int, users: int) -> dict[str, Any]:
    """Query/s of fan-out's follower page (the follows table's by_followee index, 50 per page),
    one boto3 client, on a scratch follows table holding ``follows`` edges among ``users``."""
    client = dynamodb_client(endpoint_url)
    table = f"bench-follows-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **table_shape("FollowsTable"))
    client.get_waiter("table_exists").wait(TableName=table)
    users = max(2, users)
    try:
        edges = {(n % users, (n * 7919 + n // users) % users) for n in range(follows)}
        _fill(
            client,
            table,
            [
                {
                    "follower_id": {"S": f"01BENCHUSER{a:015d}"},
                    "followee_id": {"S": f"01BENCHUSER{b:015d}"},
                    "created_at": {"N": "1700000000000"},
                }
                for a, b in edges
                if a != b
            ],
        )
        latencies: list[float] = []
        started = time.monotonic()
        n = 0
        while time.monotonic() < started + seconds:
            t = time.monotonic()
            client.query(
                TableName=table,
                IndexName="by_followee",
                KeyConditionExpression="followee_id = :f",
                ExpressionAttributeValues={":f": {"S": f"01BENCHUSER{n % users:015d}"}},
                Limit=50,
            )
            latencies.append(time.monotonic() - t)
            n += 1
        elapsed = time.monotonic() - started
    finally:
        client.delete_table(TableName=table)
    return {"follows": follows, "users": users, "per_s": len(latencies) / elapsed, "latencies": latencies}
