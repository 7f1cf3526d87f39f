"""Bare boto3 references on the run's own emulator, measured in the same run: the write ceiling
(BatchWriteItem of 25 items, and PutItem, into a table with the feed table's keys), fan-out's
follower page (a consistent Query of one followee on a Followers table as large as Ripple's),
and a feed-page Query and the post transaction on tables of 1,000 and 10,000 posts (the sizes
interleaved call by call, so that noise hits both alike).

Scratch tables have a template.yaml table's keys and indexes and no stream (the write ceiling
also has a streamed variant, a stream as the feed table's), and are deleted afterwards.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from bench.config import REPO_ROOT, summary
from ripple_local.aws import client as aws_client
from ripple_local.cfn import load_template

POSTS_PER_AUTHOR = 50  # scaling tables: every author's partition holds 50 posts
_serialize = TypeSerializer().serialize
dynamodb_client = partial(aws_client, "dynamodb")  # on the emulator: its URL, or the run's Endpoints


def _item(**values: Any) -> dict[str, Any]:
    return {name: _serialize(value) for name, value in values.items()}


def _user_id(n: int) -> str:
    return f"01BENCHUSER{n:015d}"


@contextmanager
def _scratch(client: Any, *logical_ids: str, stream: bool = False) -> Iterator[list[str]]:
    """Tables with these template.yaml tables' keys and indexes, and their stream if ``stream``
    (else none); deleted after."""
    resources, names = load_template(REPO_ROOT / "template.yaml")["Resources"], []
    try:
        for logical_id in logical_ids:
            props = resources[logical_id]["Properties"]
            shape = {k: props[k] for k in ("KeySchema", "AttributeDefinitions")}
            keep = ("IndexName", "KeySchema", "Projection")  # indexes as the template has them
            kinds = [k for k in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes") if props.get(k)]
            shape |= {kind: [{k: i[k] for k in keep} for i in props[kind]] for kind in kinds}
            if stream and "StreamSpecification" in props:
                shape["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
            names.append(f"bench-{logical_id}-{uuid.uuid4().hex[:8]}")
            client.create_table(TableName=names[-1], BillingMode="PAY_PER_REQUEST", **shape)
            client.get_waiter("table_exists").wait(TableName=names[-1])
        yield names
    finally:
        for name in names:
            client.delete_table(TableName=name)


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


def _write_loop(endpoint_url: str, table: str, seconds: float, threads: int, batch: int) -> dict[str, Any]:
    """``threads`` clients writing ``batch``-item BatchWriteItem calls (1: PutItem) for ``seconds``."""
    start = time.monotonic() + 0.2

    def run(worker: int) -> tuple[int, list[float]]:
        client = dynamodb_client(endpoint_url)
        reader = f"01BENCHREADER{os.getpid():06d}{worker:07d}"[:26]
        n, written, latencies = worker * 10_000_000, 0, []
        time.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < start + seconds:
            items = [
                _item(user_id=reader, post_id=f"01BENCH{n + i:019d}", author_id="01BENCHAUTHOR0000000000000",
                      created_at=1_700_000_000_000 + n + i)
                for i in range(batch)
            ]  # fmt: skip
            t = time.monotonic()
            if batch > 1:
                puts = [{"PutRequest": {"Item": item}} for item in items]
                left = client.batch_write_item(RequestItems={table: puts}).get("UnprocessedItems") or {}
                written += batch - len(left.get(table) or [])
            else:
                client.put_item(TableName=table, Item=items[0])
                written += 1
            latencies.append(time.monotonic() - t)
            n += batch
        return written, latencies

    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(run, range(threads)))
    latencies = [x for _, chunk in done for x in chunk]
    return {"items_per_s": sum(w for w, _ in done) / seconds, "calls": len(latencies), "latencies": latencies}


def measure_ceiling(
    endpoint_url: str, seconds: float, threads: int = 1, stream: bool = False
) -> dict[str, Any]:
    """Items/s through BatchWriteItem and PutItem/s, each from ``threads`` clients, into a table
    with the feed table's keys; with its stream too if ``stream`` (each write then also appends
    a stream record, as Ripple's fan-out writes do)."""
    with _scratch(dynamodb_client(endpoint_url), "FeedTable", stream=stream) as (table,):
        _write_loop(endpoint_url, table, min(1.0, seconds / 4), threads, 25)  # warm-up (a JVM's JIT)
        batch = _write_loop(endpoint_url, table, seconds, threads, 25)
        single = _write_loop(endpoint_url, table, seconds / 2, threads, 1)
    return {
        "threads": threads, "stream": stream, "seconds": seconds, "batch_items_per_s": batch["items_per_s"],
        "batch_calls_per_s": batch["calls"] / seconds, "batch_call_latency": summary(batch["latencies"]),
        "put_items_per_s": single["items_per_s"], "put_latency": summary(single["latencies"]),
    }  # fmt: skip


def measure_follower_queries(
    endpoint_url: str, seconds: float, follows: int, users: int, page: int
) -> dict[str, Any]:
    """Fan-out's follower page (a consistent Query of one followee's partition of the Followers
    table, ``page`` items) on a scratch table of ``follows`` edges among ``users``."""
    client, users, followees = dynamodb_client(endpoint_url), max(2, users), itertools.count()
    with _scratch(client, "FollowersTable") as (table,):
        edges = {(n % users, (n * 7919 + n // users) % users) for n in range(follows)}
        rows = [(_user_id(a), _user_id(b)) for a, b in edges if a != b]
        _fill(client, table, [_item(followee_id=b, follower_id=a, created_at=1700000000000) for a, b in rows])

        def query() -> None:
            followee = {":f": {"S": _user_id(next(followees) % users)}}
            client.query(
                TableName=table, KeyConditionExpression="followee_id = :f",
                ExpressionAttributeValues=followee, ConsistentRead=True, Limit=page,
            )  # fmt: skip

        (latencies,) = _timed([query], seconds)
    return {"follows": follows, "users": users, "page": page, "latency": summary(latencies)}


def _post(author: int, n: int) -> dict[str, Any]:
    return _item(author_id=_user_id(author), post_id=f"01BENCHPOST{n:015d}", text=f"bench post #{n}",
                 created_at=1_700_000_000_000 + n)  # fmt: skip


def _sized(client: Any, size: int, tables: list[str]) -> list[Callable[[], None]]:
    """Seed scratch Posts, PostIds and Users tables with ``size`` posts by ``size / 50`` authors;
    returns a feed-page Query (one partition, newest first, 20 items, consistent, as Ripple reads)
    and the post transaction of PostRepository.create (3 items) on them."""
    posts_table, post_ids, users = tables
    authors, turn = max(1, size // POSTS_PER_AUTHOR), itertools.count(1)
    posts = [_post(n // POSTS_PER_AUTHOR, n) for n in range(size)]
    _fill(client, posts_table, posts)
    _fill(client, post_ids, [{"post_id": p["post_id"], "author_id": p["author_id"]} for p in posts])
    password = "scrypt$16384$8$1$" + "x" * 24 + "$" + "y" * 44
    _fill(client, users, [
        _item(user_id=_user_id(n), username=f"bench_{n:010d}", password_hash=password,
              created_at=1700000000000, follower_count=8, following_count=8, post_count=POSTS_PER_AUTHOR)
        for n in range(authors)
    ])  # fmt: skip

    def query() -> None:
        author = {":a": {"S": _user_id(next(turn) * 7919 % authors)}}
        client.query(
            TableName=posts_table, KeyConditionExpression="author_id = :a", ExpressionAttributeValues=author,
            ScanIndexForward=False, ConsistentRead=True, Limit=20,
        )  # fmt: skip

    def transaction() -> None:
        n = 10**12 + next(turn)
        post = _post(n % authors, n)
        count = {"UpdateExpression": "ADD post_count :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}
        new = "attribute_not_exists(post_id)"
        client.transact_write_items(TransactItems=[
            {"Put": {"TableName": posts_table, "Item": post, "ConditionExpression": new}},
            {"Put": {"TableName": post_ids, "Item": {k: post[k] for k in ("post_id", "author_id")}}},
            {"Update": {"TableName": users, "Key": {"user_id": post["author_id"]}, **count,
                        "ConditionExpression": "attribute_exists(user_id)"}},
        ])  # fmt: skip

    return [query, transaction]


def measure_scaling(endpoint_url: str, sizes: Sequence[int], seconds: float) -> dict[str, Any]:
    """p50/p99 of the feed-page Query and of the post transaction at each table size, the sizes
    interleaved (a call at each size in turn) after a short discarded warm-up (a JVM compiles its
    hot paths during the first thousands of calls)."""
    client = dynamodb_client(endpoint_url)
    logical_ids = ("PostsTable", "PostIdsTable", "UsersTable") * len(sizes)
    with _scratch(client, *logical_ids) as names:
        pairs = [_sized(client, size, names[3 * i : 3 * i + 3]) for i, size in enumerate(sizes)]
        calls = [pair[0] for pair in pairs] + [pair[1] for pair in pairs]
        _timed(calls, min(1.0, seconds / 4), minimum=1)
        latencies = _timed(calls, seconds)
    return {
        str(size): {"query": summary(latencies[i]), "transaction": summary(latencies[len(sizes) + i])}
        for i, size in enumerate(sizes)
    }
