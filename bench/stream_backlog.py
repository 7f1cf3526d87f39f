"""``python -m bench.stream_backlog``: does a call on a streamed table cost more once other
streams hold records? DynamoDB Local three ways: as its jar runs (``-inMemory``), with its
database in a RAM file, and with that file's stream records indexed - as ``ripple_local``
starts it (``ripple_local.dynamodb_local``); the middle one tells the file's cost from the
indexes' effect.

For each engine and each backlog (records already held by another table's stream), a new
streamed table is created after the backlog - so its stream's first record comes after it,
as the feed table's does after the posts' and follows' in a run - and timed: 25-item
BatchWriteItem calls into it (reported as items/s at the median call), and GetRecords on its
shard once it is idle (what a stream runner's poll costs); and GetRecords at the tip of the
backlog's own stream (a runner caught up with a busy stream, as the cache refresher is with
the feed's). One client; prints a Markdown table. About two minutes. Each measured table's
own writes add to the backlog of the next (1,125 records each), so the held counts are lower
bounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ripple_local import aws
from ripple_local.processes import DynamoDBLocalProcess

BACKLOGS = (0, 10_000, 40_000)  # records held by another stream before the table is made
CALLS = 40  # timed calls per measurement, after DISCARDED more
DISCARDED = 5  # the first calls on a new table or iterator, not timed (first-use costs)
# BatchWriteItem calls before anything is timed: the JVM compiles its hot paths over the
# first thousands of calls, and a cold engine would time its compiler.
WARM_UP_CALLS = 300
# (label, DynamoDBLocalProcess options)
ENGINES = (
    ("DynamoDB Local, -inMemory (as its jar runs)", {"in_memory": True}),
    ("DynamoDB Local, RAM file, no indexes", {"index_streams": False}),
    ("DynamoDB Local as ripple_local starts it (RAM file, indexed)", {}),
)


@contextmanager
def _engine(options: dict[str, bool], state: Path) -> Iterator[str]:
    process = DynamoDBLocalProcess("127.0.0.1", 0, state, **options)
    process.start_on_any_free_port()
    try:
        file_wanted = not options.get("in_memory", False)
        if (process.database_dir is not None) != file_wanted:
            raise RuntimeError("no RAM-backed directory with room for the database file here")
        yield process.url
    finally:
        process.stop()


def _table(client: Any, name: str, stream: bool = True) -> str:
    """A one-key table, with a NEW_AND_OLD_IMAGES stream if ``stream``; returns its stream ARN
    ("" without one)."""
    streamed = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        **(streamed if stream else {}),
    )  # fmt: skip
    return str(client.describe_table(TableName=name)["Table"].get("LatestStreamArn", ""))


def _batch(client: Any, table: str, start: int) -> float:
    puts = [
        {"PutRequest": {"Item": {"pk": {"S": f"k{start + i}"}, "body": {"S": "x" * 100}}}} for i in range(25)
    ]
    t = time.perf_counter()
    client.batch_write_item(RequestItems={table: puts})
    return time.perf_counter() - t


def _tip_get_records(streams: Any, arn: str, calls: int) -> float:
    """Median seconds of a GetRecords from the LATEST position of the stream's last shard."""
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][-1]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    latencies = []
    for _ in range(calls + DISCARDED):
        t = time.perf_counter()
        iterator = streams.get_records(ShardIterator=iterator, Limit=100).get("NextShardIterator") or iterator
        latencies.append(time.perf_counter() - t)
    return statistics.median(latencies[DISCARDED:])


def measure(
    options: dict[str, bool],
    backlogs: Sequence[int],
    state: Path,
    warm_up: int = WARM_UP_CALLS,
    calls: int = CALLS,
) -> list[dict[str, float]]:
    """Per backlog: BatchWriteItem items/s into a table made after it, and GetRecords (s) at the
    tip of that table's idle stream and of the backlog's own.
    Raises RuntimeError when a file is asked for and there is no RAM-backed directory."""
    rows = []
    with _engine(options, state) as url:
        client, streams = aws.client("dynamodb", url), aws.client("dynamodbstreams", url)
        backlog_arn = _table(client, "backlog")
        # Warm the JVM up (WARM_UP_CALLS) on a table without a stream: it adds no stream records.
        _table(client, "warm-up", stream=False)
        for n in range(warm_up):
            _batch(client, "warm-up", 25 * n)
        held = 0
        for backlog in backlogs:
            while held < backlog:
                _batch(client, "backlog", held)
                held += 25
            table = f"after-{backlog}"
            arn = _table(client, table)
            times = [_batch(client, table, 10**9 + 25 * n) for n in range(calls + DISCARDED)][DISCARDED:]
            rows.append(
                {
                    "backlog": backlog,
                    "items_per_s": 25 / statistics.median(times),
                    "get_records_s": _tip_get_records(streams, arn, calls),
                    "backlog_get_records_s": _tip_get_records(streams, backlog_arn, calls),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stream_backlog", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--backlogs", default=",".join(map(str, BACKLOGS)), help="records held, comma-separated"
    )
    parser.add_argument("--warm-up", type=int, default=WARM_UP_CALLS, help="untimed calls first")
    parser.add_argument("--calls", type=int, default=CALLS, help="timed calls per measurement")
    args = parser.parse_args(argv)
    backlogs = [int(x) for x in args.backlogs.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="stream-backlog-") as state:
        results = [
            (label, measure(options, backlogs, Path(state), args.warm_up, args.calls))
            for label, options in ENGINES
        ]
    columns = (
        "engine",
        "records held before the table",
        "BatchWriteItem items/s (median call)",
        "idle GetRecords p50",
        "GetRecords at the backlog stream's tip p50",
    )
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for label, rows in results:
        for row in rows:
            items = f"{row['items_per_s']:,.0f}"
            polls = [f"{row[key] * 1000:.1f} ms" for key in ("get_records_s", "backlog_get_records_s")]
            print(f"| {label} | {row['backlog']:,} | {items} | {' | '.join(polls)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
