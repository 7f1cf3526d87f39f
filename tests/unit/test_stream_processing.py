"""In-order partial batch failure: after a failed record, later ones are not run."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from ripple.stream_processing import InOrderStreamConsumer
from ripple.streams import StreamChange, table_name_from_arn

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def three_record_event() -> dict[str, Any]:
    base = load("fanout/posts_insert.json")["Records"][0]
    records = []
    for i in range(3):
        r = copy.deepcopy(base)
        r["dynamodb"]["SequenceNumber"] = f"10{i}"
        r["dynamodb"]["NewImage"]["text"] = {"S": f"post {i}"}
        records.append(r)
    return {"Records": records}


def test_stream_change_from_sample_event() -> None:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    raw = load("fanout/posts_remove.json")["Records"][0]
    change = StreamChange.from_record(DynamoDBRecord(raw))
    assert change.table == "ripple-local-PostsTable"
    assert change.event == "REMOVE"
    assert change.image["post_id"] == raw["dynamodb"]["OldImage"]["post_id"]["S"]
    assert table_name_from_arn(raw["eventSourceARN"]) == "ripple-local-PostsTable"


def test_records_after_a_failure_are_reported_not_run() -> None:
    seen: list[str] = []

    def handle(change: StreamChange) -> None:
        seen.append(change.new_image["text"])
        if change.new_image["text"] == "post 1":
            raise RuntimeError("boom")

    response = InOrderStreamConsumer(handle).process(three_record_event(), None)
    assert seen == ["post 0", "post 1"]
    assert response == {"batchItemFailures": [{"itemIdentifier": "101"}, {"itemIdentifier": "102"}]}


def test_each_invocation_starts_clean() -> None:
    fail = {"on": True}

    def handle(change: StreamChange) -> None:
        if fail["on"]:
            raise RuntimeError("boom")

    consumer = InOrderStreamConsumer(handle)
    with pytest.raises(BatchProcessingError):  # every record failed: Lambda retries the batch
        consumer.process(three_record_event(), None)
    fail["on"] = False
    assert consumer.process(three_record_event(), None) == {"batchItemFailures": []}


def test_concurrent_invocations_of_one_handler_keep_their_own_failures() -> None:
    """A local runner may call one function's handler from several threads at once (one
    runner per stream, or parallel shards): each invocation owns its batch state, as each
    Lambda invocation does, so one batch never reports another's failure or skips its records."""
    import threading

    a_failed = threading.Event()
    b_inside = threading.Event()

    def handle(change: StreamChange) -> None:
        text = change.new_image["text"]
        if text == "a 0":  # batch A's first record fails, once B is inside its own first record
            assert b_inside.wait(5)
            a_failed.set()
            raise RuntimeError("A's record fails")
        if text == "b 0":
            b_inside.set()
            assert a_failed.wait(5)  # B's record finishes after A failed

    def event(prefix: str, first_sequence: int) -> dict[str, Any]:
        batch = three_record_event()
        for i, record in enumerate(batch["Records"]):
            record["dynamodb"]["SequenceNumber"] = str(first_sequence + i)
            record["dynamodb"]["NewImage"]["text"] = {"S": f"{prefix} {i}"}
        return batch

    consumer = InOrderStreamConsumer(handle)
    responses: dict[str, Any] = {}

    def invoke(name: str, batch: dict[str, Any]) -> None:
        try:
            responses[name] = consumer.process(batch, None)
        except BatchProcessingError as error:  # every record of the batch failed
            responses[name] = error

    threads = [
        threading.Thread(target=invoke, args=("A", event("a", 200))),
        threading.Thread(target=invoke, args=("B", event("b", 300))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert responses["B"] == {"batchItemFailures": []}
    assert isinstance(responses["A"], BatchProcessingError)  # all of A reported: 200 failed, 201-202 skipped
