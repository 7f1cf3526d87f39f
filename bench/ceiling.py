"""Bare boto3 references on the run's own emulator, measured in the same run.

* the write ceiling: BatchWriteItem (25 items) and PutItem in a tight loop into a scratch
  table with the feed table's keys, the reference for fan-out;
* fan-out's follower page: a strongly consistent Query of one followee's partition of a
  scratch Followers table holding as many edges as Ripple's;
* scaling: a feed-page Query (one partition, newest first, Limit 20) and the post transaction
  (Put post, Put post-id row, ADD to the author's post_count) on tables seeded with 1,000 and
  with 10,000 posts, the sizes interleaved call by call so that noise hits both alike.

Scratch tables have a template.yaml table's keys and indexes but no stream, and are deleted
afterwards. No stream, because DynamoDB Local charges every item written to a streamed table
for the records held by the streams of the tables created before it (and keeps a deleted
table's records): a streamed scratch table made mid-run would time the records Ripple's tables
have accumulated, and its own records would slow every later one.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.config import REPO_ROOT, summary
from ripple_local.aws import client as aws_client
from ripple_local.cfn import load_template

POSTS_PER_AUTHOR = 50  # scaling tables: every author's partition holds 50 posts


def dynamodb_client(endpoint_url: str) -> Any:
    """A low-level DynamoDB client on the emulator, with dummy credentials."""
    return aws_client("dynamodb", endpoint_url)


def _scratch(client: Any, logical_id: str) -> str:
    """A table with a template.yaml table's keys and indexes and no stream (module docstring)."""
    props = load_template(REPO_ROOT / "template.yaml")["Resources"][logical_id]["Properties"]
    shape = {k: props[k] for k in ("KeySchema", "AttributeDefinitions")}
    if props.get("GlobalSecondaryIndexes"):
        keep = ("IndexName", "KeySchema", "Projection")
        shape["GlobalSecondaryIndexes"] = [{k: i[k] for k in keep} for i in props["GlobalSecondaryIndexes"]]
    name = f"bench-{logical_id}-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **shape)
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


def _feed_item(reader: str, n: int) -> dict[str, Any]:
    return {
        "user_id": {"S": reader},
        "post_id": {"S": f"01BENCH{n:019d}"},
        "author_id": {"S": "01BENCHAUTHOR0000000000000"},
        "created_at": {"N": str(1_700_000_000_000 + n)},
    }


def _write_loop(endpoint_url: str, table: str, seconds: float, threads: int, batch: int) -> dict[str, Any]:
    """``threads`` clients writing ``batch``-item BatchWriteItem calls (1: PutItem) for ``seconds``."""
    start = time.monotonic() + 0.2

    def run(worker: int) -> tuple[int, list[float]]:
        client = dynamodb_client(endpoint_url)
        reader = f"01BENCHREADER{os.getpid():06d}{worker:07d}"[:26]
        n, written, latencies = worker * 10_000_000, 0, []
        time.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < start + seconds:
            t = time.monotonic()
            if batch > 1:
                puts = [{"PutRequest": {"Item": _feed_item(reader, n + i)}} for i in range(batch)]
                left = client.batch_write_item(RequestItems={table: puts}).get("UnprocessedItems") or {}
                written += batch - len(left.get(table) or [])
            else:
                client.put_item(TableName=table, Item=_feed_item(reader, n))
                written += 1
            latencies.append(time.monotonic() - t)
            n += batch
        return written, latencies

    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(run, range(threads)))
    latencies = [x for _, chunk in done for x in chunk]
    return {"items_per_s": sum(w for w, _ in done) / seconds, "calls": len(latencies), "latencies": latencies}


def measure_ceiling(endpoint_url: str, seconds: float, threads: int = 1) -> dict[str, Any]:
    """Items/s through BatchWriteItem and PutItem/s, each from ``threads`` clients."""
    client = dynamodb_client(endpoint_url)
    table = _scratch(client, "FeedTable")
    try:
        _write_loop(endpoint_url, table, min(1.0, seconds / 4), threads, 25)  # warm-up (a JVM's JIT)
        batch = _write_loop(endpoint_url, table, seconds, threads, 25)
        single = _write_loop(endpoint_url, table, seconds / 2, threads, 1)
    finally:
        client.delete_table(TableName=table)
    return {
        "threads": threads,
        "seconds": seconds,
        "batch_items_per_s": batch["items_per_s"],
        "batch_calls_per_s": batch["calls"] / seconds,
        "batch_call_latency": summary(batch["latencies"]),
        "put_items_per_s": single["items_per_s"],
        "put_latency": summary(single["latencies"]),
    }


def _user_id(n: int) -> str:
    return f"01BENCHUSER{n:015d}"


def measure_follower_queries(
    endpoint_url: str, seconds: float, follows: int, users: int, page: int
) -> dict[str, Any]:
    """Fan-out's follower page (a consistent Query of one followee's partition of the Followers
    table, ``page`` items) on a scratch table of ``follows`` edges among ``users``."""
    client = dynamodb_client(endpoint_url)
    table = _scratch(client, "FollowersTable")
    users = max(2, users)
    try:
        edges = {(n % users, (n * 7919 + n // users) % users) for n in range(follows)}
        since = {"N": "1700000000000"}
        items = [
            {"followee_id": {"S": _user_id(b)}, "follower_id": {"S": _user_id(a)}, "created_at": since}
            for a, b in edges
            if a != b
        ]
        _fill(client, table, items)
        followees = itertools.count()

        def query() -> None:
            followee = {":f": {"S": _user_id(next(followees) % users)}}
            client.query(
                TableName=table,
                KeyConditionExpression="followee_id = :f",
                ExpressionAttributeValues=followee,
                ConsistentRead=True,
                Limit=page,
            )

        (latencies,) = _timed([query], seconds)
    finally:
        client.delete_table(TableName=table)
    return {"follows": follows, "users": users, "page": page, "latency": summary(latencies)}


def _post(author: int, n: int) -> dict[str, Any]:
    return {
        "author_id": {"S": _user_id(author)},
        "post_id": {"S": f"01BENCHPOST{n:015d}"},
        "text": {"S": f"bench post #{n}"},
        "created_at": {"N": str(1_700_000_000_000 + n)},
    }


def _user(n: int) -> dict[str, Any]:
    counts = {"follower_count": {"N": "8"}, "following_count": {"N": "8"}, "post_count": {"N": "50"}}
    password = {"S": "scrypt$16384$8$1$" + "x" * 24 + "$" + "y" * 44}
    name, created = {"S": f"bench_{n:010d}"}, {"N": "1700000000000"}
    return {
        "user_id": {"S": _user_id(n)},
        "username": name,
        "password_hash": password,
        "created_at": created,
    } | counts


class _SizedTables:
    """Scratch Posts and PostIds tables seeded with ``size`` posts by ``size / 50`` authors, and a
    Users table of those authors."""

    def __init__(self, client: Any, size: int) -> None:
        self.client, self.turn, self.next_post = client, 0, 10**12
        self.posts, self.post_ids, self.users = (
            _scratch(client, t) for t in ("PostsTable", "PostIdsTable", "UsersTable")
        )
        self.authors = max(1, size // POSTS_PER_AUTHOR)
        posts = [_post(n // POSTS_PER_AUTHOR, n) for n in range(size)]
        _fill(client, self.posts, posts)
        _fill(client, self.post_ids, [{"post_id": p["post_id"], "author_id": p["author_id"]} for p in posts])
        _fill(client, self.users, [_user(n) for n in range(self.authors)])

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
        new = "attribute_not_exists(post_id)"
        count = {"UpdateExpression": "ADD post_count :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}
        self.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.posts, "Item": post, "ConditionExpression": new}},
                {"Put": {"TableName": self.post_ids, "Item": {k: post[k] for k in ("post_id", "author_id")}}},
                {
                    "Update": {
                        "TableName": self.users,
                        "Key": {"user_id": post["author_id"]},
                        **count,
                        "ConditionExpression": "attribute_exists(user_id)",
                    }
                },
            ]
        )

    def delete(self) -> None:
        for table in (self.posts, self.post_ids, self.users):
            self.client.delete_table(TableName=table)


def measure_scaling(endpoint_url: str, sizes: Sequence[int], seconds: float) -> dict[str, Any]:
    """p50/p99 of the feed-page Query and of the post transaction at each table size, the sizes
    interleaved (a call at each size in turn) after a short discarded warm-up (a JVM compiles its
    hot paths during the first thousands of calls)."""
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
