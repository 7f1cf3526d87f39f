"""The cache refresher, invoked with the sample events of events/cache_refresher/, against
the real Redis."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
import redis

from ripple.cache.feed_cache import SENTINEL, FeedRef
from ripple.cache.pipelines import ScriptPipeline
from ripple.container import Container
from tests.integration.support import SAMPLE_AUTHOR, SAMPLE_FOLLOWER, SAMPLE_POST, fresh_ids, load_event

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator
REPOSTER = "01JDQ0000000000000000CCCCC"  # events/cache_refresher/feed_repost_modify.json


def test_insert_adds_to_a_cached_feed_idempotently_and_remove_takes_it_out(
    container: Container, cache_refresher_handler: Any
) -> None:
    ids = fresh_ids()
    reader = ids[SAMPLE_FOLLOWER]
    container.feed_cache.warm(reader, None, [], complete=True)  # a cached, empty feed
    insert = load_event("cache_refresher/feed_insert.json", **ids)
    expected = FeedRef(post_id=ids[SAMPLE_POST], author_id=ids[SAMPLE_AUTHOR])

    assert cache_refresher_handler(insert) == {"batchItemFailures": []}
    assert cache_refresher_handler(insert) == {"batchItemFailures": []}
    page = container.feed_cache.page(reader, None, 10)
    assert page is not None and page.refs == [expected]

    modify = load_event("cache_refresher/feed_modify.json", **ids)
    assert cache_refresher_handler(modify) == {"batchItemFailures": []}
    assert container.feed_cache.page(reader, None, 10) == page

    remove = load_event("cache_refresher/feed_remove.json", **ids)
    assert cache_refresher_handler(remove) == {"batchItemFailures": []}
    after = container.feed_cache.page(reader, None, 10)
    assert after is not None and after.refs == []


def test_a_bare_key_image_before_the_whole_item_is_skipped_not_failed(
    container: Container, cache_refresher_handler: Any
) -> None:
    # moto streams an UpdateItem that creates an item as two INSERTs: the bare key, then the
    # whole item. The first has nothing to cache; failing it would hold the lane back.
    ids = fresh_ids()
    reader = ids[SAMPLE_FOLLOWER]
    container.feed_cache.warm(reader, None, [], complete=True)
    insert = load_event("cache_refresher/feed_insert.json", **ids)
    bare = copy.deepcopy(insert)
    record = bare["Records"][0]["dynamodb"]
    record["NewImage"] = dict(record["Keys"])
    record["SequenceNumber"] = "299999999999999999999"

    both = {"Records": bare["Records"] + insert["Records"]}
    assert cache_refresher_handler(both) == {"batchItemFailures": []}
    page = container.feed_cache.page(reader, None, 10)
    assert page is not None and page.refs == [FeedRef(post_id=ids[SAMPLE_POST], author_id=ids[SAMPLE_AUTHOR])]


def test_a_repost_moving_an_item_replaces_its_cached_member(
    container: Container, cache_refresher_handler: Any
) -> None:
    ids = fresh_ids()
    reader = ids[SAMPLE_FOLLOWER]
    original = FeedRef(post_id=ids[SAMPLE_POST], author_id=ids[SAMPLE_AUTHOR])
    container.feed_cache.warm(reader, None, [original], complete=True)
    moved = load_event("cache_refresher/feed_repost_modify.json", **ids)  # placed by a repost

    assert cache_refresher_handler(moved) == {"batchItemFailures": []}
    assert cache_refresher_handler(moved) == {"batchItemFailures": []}  # redelivered: the same

    placed = FeedRef(
        ids[SAMPLE_POST], ids[SAMPLE_AUTHOR], placed="01JDQ8000000000000000RRRRR", reposted_by=REPOSTER
    )
    assert [m for m in container.feed_cache.members(reader) if m != SENTINEL] == [placed.member]
    page = container.feed_cache.page(reader, None, 10)
    assert page is not None and page.refs == [placed]


def test_insert_into_a_cold_feed_leaves_it_cold(container: Container, cache_refresher_handler: Any) -> None:
    ids = fresh_ids()
    insert = load_event("cache_refresher/feed_insert.json", **ids)
    assert cache_refresher_handler(insert) == {"batchItemFailures": []}
    assert container.feed_cache.page(ids[SAMPLE_FOLLOWER], None, 10) is None


def test_a_stream_batch_is_applied_in_one_round_trip(
    container: Container, cache_refresher_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: the refresher applies a whole batch with one pipelined round trip."""
    template = load_event("cache_refresher/feed_insert.json", **fresh_ids())["Records"][0]
    records, readers = [], []
    for i in range(20):
        ids = fresh_ids()
        readers.append(ids[SAMPLE_FOLLOWER])
        container.feed_cache.warm(ids[SAMPLE_FOLLOWER], None, [], complete=True)
        record = copy.deepcopy(load_event("cache_refresher/feed_insert.json", **ids)["Records"][0])
        record["dynamodb"]["SequenceNumber"] = str(int(template["dynamodb"]["SequenceNumber"]) + i)
        records.append(record)
    sent: list[int] = []
    thread = threading.get_ident()
    original = redis.connection.Connection.send_packed_command

    def counting(connection: Any, command: Any, check_health: bool = True) -> None:
        if threading.get_ident() == thread:
            sent.append(1)
        original(connection, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    assert cache_refresher_handler({"Records": records}) == {"batchItemFailures": []}
    monkeypatch.undo()
    assert len(sent) == 1
    assert all(len(container.feed_cache.page(r, None, 10).refs) == 1 for r in readers)  # type: ignore[union-attr]


def test_a_batch_redis_cannot_take_is_retried_whole(
    container: Container, cache_refresher_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert = load_event("cache_refresher/feed_insert.json", **fresh_ids())
    first = insert["Records"][0]["dynamodb"]["SequenceNumber"]

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("Redis is unreachable")

    monkeypatch.setattr(ScriptPipeline, "execute", refuse)
    assert cache_refresher_handler(insert) == {"batchItemFailures": [{"itemIdentifier": first}]}
