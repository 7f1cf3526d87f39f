"""The local stack's metrics plumbing: the exporter's lifecycle and environment, and what a
stream runner reports when a handler keeps failing (on real moto streams and SQS)."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ripple_local import stack as stack_module
from ripple_local.aws import Endpoints
from ripple_local.esm import CheckpointStore, RetryBackoff, StreamEventSourceMapping
from ripple_local.lambda_context import LambdaContextFactory
from ripple_local.metrics_exporter import SINK_ENV, MetricsExporter
from ripple_local.stack import LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def prepared(
    emulator: Endpoints, redis_server: str, tmp_path: Path
) -> Iterator[tuple[LocalStack, dict[str, str]]]:
    environ: dict[str, str] = {SINK_ENV: "http://previous.invalid/emf"}
    local = LocalStack(
        ROOT,
        endpoints=emulator,
        redis_url=redis_server,
        state_dir=tmp_path,
        stack_name=f"met-{uuid.uuid4().hex[:8]}",
        with_api=False,
        with_runners=False,
        environ=environ,
    ).prepare()
    yield local, environ
    local.stop()


def test_the_exporter_gets_the_sink_variable_and_the_summary_line(
    prepared: tuple[LocalStack, dict[str, str]],
) -> None:
    local, environ = prepared
    exporter = local.start_metrics(port=0)
    assert environ[SINK_ENV] == exporter.sink_url == local.environment[SINK_ENV]
    assert any(line.split()[:2] == ["metrics", exporter.url] for line in local.summary().splitlines())
    assert scrape(exporter.url)[("ripple_exporter_emf_documents_total", ())] == 0

    local.stop_metrics()
    assert environ[SINK_ENV] == "http://previous.invalid/emf"  # what was there before
    assert not exporter.running


def test_a_taken_default_port_falls_back_to_a_free_one(
    prepared: tuple[LocalStack, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    local, _ = prepared
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(stack_module, "DEFAULT_METRICS_PORT", taken.getsockname()[1])
        exporter = local.start_metrics()  # no port asked for: the default, or any free one
        assert exporter.port != taken.getsockname()[1]
        local.stop_metrics()
        # but an explicitly requested port that is taken is an error
        with pytest.raises(RuntimeError, match="not available"):
            local.start_metrics(port=taken.getsockname()[1])


@pytest.fixture
def failing_stream(aws_client: Callable[[str], Any]) -> Iterator[tuple[str, str, str]]:
    """A streamed table and an on-failure queue: (table, stream ARN, queue ARN)."""
    dynamodb, sqs = aws_client("dynamodb"), aws_client("sqs")
    name = f"obs-{uuid.uuid4().hex[:10]}"
    stream_arn = dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]["LatestStreamArn"]
    url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    yield name, stream_arn, queue_arn
    dynamodb.delete_table(TableName=name)


def test_runner_reports_retries_failure_queue_and_iterator_age(
    aws_client: Callable[[str], Any], failing_stream: tuple[str, str, str], tmp_path: Path
) -> None:
    # Given a runner whose handler always raises, with 2 retries, no bisection, an OnFailure queue
    table, stream_arn, queue_arn = failing_stream
    for key in ("a", "b", "c"):
        aws_client("dynamodb").put_item(TableName=table, Item={"pk": {"S": key}})

    def handler(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("poison")

    with MetricsExporter(port=0) as exporter:
        runner = StreamEventSourceMapping(
            function_name="fn",
            handler=handler,
            stream_arn=stream_arn,
            properties={
                "Stream": stream_arn,
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 10,
                "MaximumRetryAttempts": 2,
                "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
            },
            streams_client=aws_client("dynamodbstreams"),
            sqs_client=aws_client("sqs"),
            checkpoint_store=CheckpointStore(tmp_path),
            context_factory=LambdaContextFactory("fn"),
            retry_backoff=RetryBackoff(0.001, 2.0, 0.01),
            observer=exporter.stream_observer("ConsumerFunction", "ItemsStream"),
        )

        # When the runner drains the stream
        runner.drain()
        values = scrape(exporter.url)

    # Then the exporter shows the three invocations, two retries and one batch given up on
    labels = (("event_source", "ItemsStream"), ("function", "ConsumerFunction"))
    assert values[("ripple_stream_invocations_total", labels)] == 3
    assert values[("ripple_stream_retries_total", labels)] == 2
    assert values[("ripple_stream_records_retried_total", labels)] == 6
    assert values[("ripple_stream_records_sent_to_failure_queue_total", labels)] == 3
    assert values[("ripple_stream_records_delivered_total", labels)] == 9
    # and an age for every delivery: records written just now, so seconds old at most, though
    # DynamoDB Local stamps them rounded down to the minute (read raw, they aged 0-60 s at
    # random, and CI once saw all 9 over a minute)
    assert values[("ripple_stream_iterator_age_seconds_count", labels)] == 9
    assert values[("ripple_stream_iterator_age_seconds_bucket", (*labels, ("le", "10.0")))] == 9
    assert runner.stats.sent_to_failure_queue == 1


@pytest.mark.parametrize("how", ["polling", "drain"])
def test_runner_keeps_delivering_after_moto_rolls_back_a_transaction(
    aws_client: Callable[[str], Any], failing_stream: tuple[str, str, str], tmp_path: Path, how: str
) -> None:
    """Found through the metrics: delivered records stopped growing after a duplicate like.
    moto rolls a cancelled transaction back by swapping in copies of its tables, and shard
    iterators issued before then never see another record; the runner re-opens from its
    checkpoint (when draining, and when a shard has been idle for shard_refresh_s)."""
    table, stream_arn, _ = failing_stream
    dynamodb = aws_client("dynamodb")
    delivered: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        delivered.extend(r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"])

    runner = StreamEventSourceMapping(
        function_name="fn",
        handler=handler,
        stream_arn=stream_arn,
        properties={"Stream": stream_arn, "StartingPosition": "TRIM_HORIZON"},
        streams_client=aws_client("dynamodbstreams"),
        sqs_client=aws_client("sqs"),
        checkpoint_store=CheckpointStore(tmp_path),
        context_factory=LambdaContextFactory("fn"),
        shard_refresh_s=0.05,
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    assert runner.poll_once() == 1  # the runner now holds an iterator after "a"

    # When a transaction on the table is cancelled (a condition fails), then "b" is written
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": {"pk": {"S": "a"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}})

    # Then "b" is still delivered
    if how == "drain":
        runner.drain()
    else:
        deadline = time.monotonic() + 3
        while "b" not in delivered and time.monotonic() < deadline:
            runner.poll_once()
            time.sleep(0.02)
    assert delivered == ["a", "b"]
