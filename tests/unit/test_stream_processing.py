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
