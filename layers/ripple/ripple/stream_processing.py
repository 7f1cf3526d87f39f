"""Powertools batch processing for DynamoDB stream consumers, with in-order failure.

Lambda retries a shard from the first failed record, but Powertools' ``BatchProcessor``
goes on processing the records after a failure. If a later change to the same row (say
the post's deletion) succeeded before the failed one (its creation) is retried, the retry
would undo it. So once a record fails, the rest of the batch is reported as failed
without being run: they are delivered again, in order, after the failed one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from ripple.observability import count, logger, metrics, tracer
from ripple.streams import StreamChange


class RecordSkipped(Exception):
    """Not attempted because an earlier record of the same batch failed."""


class _Invocation:
    """One batch's state: its own BatchProcessor and its own failure flag. Lambda runs one
    invocation per container at a time, but a local runner (or a test) may call one handler
    from several threads at once; shared state would let one batch report another's
    failures, or commit past a record that failed."""

    def __init__(self, handle: Callable[[StreamChange], None]) -> None:
        self.handle = handle
        self.processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
        self.failed = False

    def record_handler(self, record: DynamoDBRecord) -> None:
        if self.failed:
            raise RecordSkipped(
                f"skipped after an earlier failure: {record.dynamodb and record.dynamodb.sequence_number}"
            )
        try:
            self.handle(StreamChange.from_record(record))
        except Exception:
            self.failed = True
            count("StreamRecordsFailed")
            logger.exception("stream record failed", extra={"event_id": record.event_id})
            raise
        count("StreamRecordsProcessed")


class InOrderStreamConsumer:
    """One per function and container: feeds each stream change to ``handle`` in order."""

    def __init__(self, handle: Callable[[StreamChange], None]) -> None:
        self._handle = handle

    def process(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Process a Lambda DynamoDB stream event; returns ``batchItemFailures``."""
        invocation = _Invocation(self._handle)
        count("StreamBatches")
        response = process_partial_response(
            event=event,
            record_handler=invocation.record_handler,
            processor=invocation.processor,
            context=context,
        )
        return dict(response)


def lambda_stream_handler(handle: Callable[[StreamChange], None]) -> Callable[[dict[str, Any], Any], Any]:
    """The Lambda entry point for a stream consumer, with Powertools logging, tracing and
    metrics stacked on it; build it once per container, at import."""
    consumer = InOrderStreamConsumer(handle)

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return consumer.process(event, context)
        finally:
            # What @metrics.log_metrics does, but through the provider in effect now, not
            # the one that was in place when the handler was built (observability.use_provider).
            metrics.flush_metrics()

    return handler
