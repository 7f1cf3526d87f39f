"""batch_write sends a large write's BatchWriteItem calls concurrently (issue 11: fan-out
scales with the batch), each chunk keeping its own UnprocessedItems retries. A fake
connection stands in for DynamoDB (this module's unit test; the real emulator's behaviour
is in integration/test_dynamodb_behaviours.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from ripple.repositories import batch
from ripple.repositories.batch import WRITE_BATCH_SIZE, WRITE_CONCURRENCY, UnprocessedError, batch_write


class Item(Model):
    class Meta:
        table_name = "items"

    pk = UnicodeAttribute(hash_key=True)


class FakeConnection:
    """Answers BatchWriteItem after ``delay_s``; leaves the first request of a call
    unprocessed while ``unprocessed`` says so; records how many calls overlap."""

    def __init__(self, delay_s: float = 0.05, unprocessed: int = 0) -> None:
        self.delay_s = delay_s
        self.unprocessed = unprocessed
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.keys: list[str] = []
        self.client = object()

    def dispatch(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        assert operation == "BatchWriteItem"
        (requests,) = params["RequestItems"].values()
        assert len(requests) <= WRITE_BATCH_SIZE
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay_s)
        with self.lock:
            self.in_flight -= 1
            if self.unprocessed:
                self.unprocessed -= 1
                left, done = requests[:1], requests[1:]
            else:
                left, done = [], requests
            self.keys += [r["PutRequest"]["Item"]["pk"]["S"] for r in done]
        return {"UnprocessedItems": {"items": left} if left else {}}


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> FakeConnection:
    fake = FakeConnection()
    monkeypatch.setattr(
        Item, "_get_connection", classmethod(lambda cls: type("C", (), {"connection": fake})())
    )
    return fake


def test_a_large_write_is_sent_concurrently_and_completely(connection: FakeConnection) -> None:
    items = [Item(pk=f"k{i:04d}") for i in range(40 * WRITE_BATCH_SIZE)]  # a fan-out page: 40 calls
    connection.unprocessed = 5  # and DynamoDB leaves some of it for later
    assert batch_write(Item, puts=items, sleep=lambda s: None) == len(items)
    assert sorted(connection.keys) == sorted(i.pk for i in items)
    assert 1 < connection.most_in_flight <= WRITE_CONCURRENCY


def test_one_chunk_is_written_in_the_callers_thread(connection: FakeConnection) -> None:
    seen: list[str] = []
    original = connection.dispatch
    connection.dispatch = lambda op, params: (
        seen.append(threading.current_thread().name),
        original(op, params),
    )[1]  # type: ignore[method-assign]
    batch_write(Item, puts=[Item(pk="only")])
    assert seen == [threading.current_thread().name]


def test_a_chunk_that_stays_unprocessed_fails_the_write_after_the_others_finish(
    connection: FakeConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection.unprocessed = 10**6  # never clears
    connection.delay_s = 0
    with pytest.raises(UnprocessedError):
        batch_write(Item, puts=[Item(pk=f"k{i}") for i in range(3 * WRITE_BATCH_SIZE)], sleep=lambda s: None)
    assert batch._POOL is not None  # the container's pool is kept for the next write
