"""The cache refresher, invoked with the sample events of events/cache_refresher/, against
the real Redis."""

from __future__ import annotations

from typing import Any

import pytest

from ripple.cache.feed_cache import FeedRef
from ripple.container import Container
from tests.integration.support import SAMPLE_AUTHOR, SAMPLE_FOLLOWER, SAMPLE_POST, fresh_ids, load_event

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator


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


def test_insert_into_a_cold_feed_leaves_it_cold(container: Container, cache_refresher_handler: Any) -> None:
    ids = fresh_ids()
    insert = load_event("cache_refresher/feed_insert.json", **ids)
    assert cache_refresher_handler(insert) == {"batchItemFailures": []}
    assert container.feed_cache.page(ids[SAMPLE_FOLLOWER], None, 10) is None
