"""Bare boto3 references on the run's own emulator, measured in the same run.

* the write ceiling: BatchWriteItem (25 items) and PutItem in a tight loop into a scratch
  table with the feed table's keys, the reference for fan-out;
* fan-out's follower page: a strongly consistent Query of one followee's partition of a
  scratch Followers table holding as many edges as Ripple's;
* scaling: a feed-page Query (one partition, newest first, Limit 20) and the post
  transaction (Put post, Put post-id row, ADD to the author's post_count) on tables seeded
  with 1,000 and with 10,000 posts, the sizes interleaved call by call so that noise on
  the shared machine hits both alike.

Scratch tables have a template.yaml table's keys and indexes but no stream, and are deleted
afterwards. No stream, because DynamoDB Local charges every item written to a streamed
table for the records held by the streams of the tables created before it (and keeps a
deleted table's records): a streamed scratch table made mid-run would time the records
Ripple's tables have accumulated, and its own records would slow every later one.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.config import REPO_ROOT
from bench.stats import summary
from ripple_local.aws import client as aws_client


def dynamodb_client(endpoint_url: str) -> Any:
    """A low-level DynamoDB client on the emulator, with dummy credentials."""
    return aws_client("dynamodb", endpoint_url)


def table_shape(logical_id: str) -> dict[str, Any]:
    """CreateTable arguments of a template.yaml table: its keys and indexes, no stream (see
    the module docstring)."""
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
    return shape


def _scratch(client: Any, logical_id: str) -> str:
    name = f"bench-{logical_id}-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **table_shape(logical_id))
    client.get_waiter("table_exists").wait(TableName=name)
    return name


def _fill(client: Any, table: str, items: Sequence[dict[str, Any]]) -> None:
    """BatchWriteItem, 25 items a call from 4 threads, until nothing is left unprocessed."""

    def write(start: int) -> None:
        requests = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while requests:
            requests = client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(0, len(items), 25)))


def _item(reader: str, n: int) -> dict[str, Any]:
    return {
        "user_id": {"S": reader},
        "post_id": {"S": f"01BENCH{n:019d}"},
        "author_id": {"S": "01BENCHAUTHOR0000000000000"},
        "created_at": {"N": str(1_700_000_000_000 + n)},
    }


def measure_ceiling(endpoint_url: str, seconds: float, threads: int = 1) -> dict[str, Any]:
    """Items/s through BatchWriteItem and PutItem/s, each from ``threads`` clients."""
    client = dynamodb_client(endpoint_url)
    table = _scratch(client, "FeedTable")
    try:
        _loop(endpoint_url, table, min(1.0, seconds / 4), threads, batch=True)  # warm-up (a JVM's JIT)
        batch = _loop(endpoint_url, table, seconds, threads, batch=True)
        single = _loop(endpoint_url, table, seconds / 2, threads, batch=False)
    finally:
        client.delete_table(TableName=table)
    return {
        "threads": threads,
        "batch_items_per_s": batch["items"] / batch["elapsed"],
        "batch_calls_per_s": batch["calls"] / batch["elapsed"],
        "batch_call_latency": summary(batch["latencies"]),
        "put_items_per_s": single["items"] / single["elapsed"],
        "put_latency": summary(single["latencies"]),
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


def _timed(calls: Sequence[Callable[[], Any]], seconds: float, minimum: int = 5) -> list[list[float]]:
    """Latencies of each call, run round-robin for ``seconds`` (at least ``minimum`` rounds)."""
    latencies: list[list[float]] = [[] for _ in calls]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(latencies[0]) < minimum:
        for call, into in zip(calls, latencies, strict=True):
            t = time.monotonic()
            call()
            into.append(time.monotonic() - t)
    return latencies


def _user_id(n: int) -> str:
    return f"01BENCHUSER{n:015d}"


def measure_follower_queries(
    endpoint_url: str, seconds: float, follows: int, users: int, page: int
) -> dict[str, Any]:
    """Fan-out's follower page (a consistent Query of one followee's partition of the
    Followers table, ``page`` items) on a scratch table of ``follows`` edges among ``users``."""
    client = dynamodb_client(endpoint_url)
    table = _scratch(client, "FollowersTable")
    users = max(2, users)
    try:
        edges = {(n % users, (n * 7919 + n // users) % users) for n in range(follows)}
        _fill(
            client,
            table,
            [
                {
                    "followee_id": {"S": _user_id(b)},
                    "follower_id": {"S": _user_id(a)},
                    "created_at": {"N": "1700000000000"},
                }
                for a, b in edges
                if a != b
            ],
        )
        followees = iter(range(10**9))

        def query() -> None:
            client.query(
                TableName=table,
                KeyConditionExpression="followee_id = :f",
                ExpressionAttributeValues={":f": {"S": _user_id(next(followees) % users)}},
                ConsistentRead=True,
                Limit=page,
            )

        (latencies,) = _timed([query], seconds)
    finally:
        client.delete_table(TableName=table)
    return {"follows": follows, "users": users, "page": page, "latency": summary(latencies)}


POSTS_PER_AUTHOR = 50  # scaling tables: every author's partition holds 50 posts


def _post(author: int, n: int) -> dict[str, Any]:
    return {
        "author_id": {"S": _user_id(author)},
        "post_id": {"S": f"01BENCHPOST{n:015d}"},
        "text": {"S": f"bench post #{n}"},
        "created_at": {"N": str(1_700_000_000_000 + n)},
    }


def _user(n: int) -> dict[str, Any]:
    return {
        "user_id": {"S": _user_id(n)},
        "username": {"S": f"bench_{n:010d}"},
        "password_hash": {"S": "scrypt$16384$8$1$" + "x" * 24 + "$" + "y" * 44},
        "created_at": {"N": "1700000000000"},
        "follower_count": {"N": "8"},
        "following_count": {"N": "8"},
        "post_count": {"N": str(POSTS_PER_AUTHOR)},
    }


class _SizedTables:
    """Scratch Posts and PostIds tables seeded with ``size`` posts by ``size / 50`` authors,
    and a Users table of those authors."""

    def __init__(self, client: Any, size: int) -> None:
        self.client, self.size = client, size
        self.posts, self.post_ids, self.users = (
            _scratch(client, t) for t in ("PostsTable", "PostIdsTable", "UsersTable")
        )
        self.authors = max(1, size // POSTS_PER_AUTHOR)
        posts = [_post(n // POSTS_PER_AUTHOR, n) for n in range(size)]
        _fill(client, self.posts, posts)
        _fill(client, self.post_ids, [{"post_id": p["post_id"], "author_id": p["author_id"]} for p in posts])
        _fill(client, self.users, [_user(n) for n in range(self.authors)])
        self.next_post = 10**12
        self.turn = 0

    def query(self) -> None:
        """A feed page: one partition, newest first, 20 items (as Ripple reads, consistently)."""
        self.turn += 1
        self.client.query(
            TableName=self.posts,
            KeyConditionExpression="author_id = :a",
            ExpressionAttributeValues={":a": {"S": _user_id(self.turn * 7919 % self.authors)}},
            ScanIndexForward=False,
            ConsistentRead=True,
            Limit=20,
        )

    def transaction(self) -> None:
        """The post transaction of PostRepository.create: 3 items."""
        self.next_post += 1
        post = _post(self.next_post % self.authors, self.next_post)
        self.client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.posts,
                        "Item": post,
                        "ConditionExpression": "attribute_not_exists(post_id)",
                    }
                },
                {
                    "Put": {
                        "TableName": self.post_ids,
                        "Item": {"post_id": post["post_id"], "author_id": post["author_id"]},
                    }
                },
                {
                    "Update": {
                        "TableName": self.users,
                        "Key": {"user_id": post["author_id"]},
                        "UpdateExpression": "ADD post_count :one",
                        "ConditionExpression": "attribute_exists(user_id)",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )

    def delete(self) -> None:
        for table in (self.posts, self.post_ids, self.users):
            self.client.delete_table(TableName=table)


def measure_scaling(endpoint_url: str, sizes: Sequence[int], seconds: float) -> dict[str, Any]:
    """p50/p99 of the feed-page Query and of the post transaction at each table size.

    The sizes run interleaved (a call at each size in turn), after a short discarded warm-up
    (a JVM compiles its hot paths during the first thousands of calls)."""
    client = dynamodb_client(endpoint_url)
    sets: list[_SizedTables] = []
    try:
        for size in sizes:
            sets.append(_SizedTables(client, size))
        calls = [t.query for t in sets] + [t.transaction for t in sets]
        _timed(calls, min(1.0, seconds / 4), minimum=1)
        latencies = _timed(calls, seconds)
    finally:
        for tables in sets:
            tables.delete()
    n = len(sets)
    return {
        str(size): {"query": summary(latencies[i]), "transaction": summary(latencies[n + i])}
        for i, size in enumerate(sizes)
    }
