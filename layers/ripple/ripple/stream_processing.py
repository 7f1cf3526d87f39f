"""Powertools batch processing for DynamoDB stream consumers, with in-order failure.

Lambda retries a shard from the first failed record, but Powertools' ``BatchProcessor``
goes on processing the records after a failure. If a later change to the same row (say
the post's deletion) succeeded before the failed one (its creation) is retried, the retry
would undo it. So once a record fails, the rest of the batch is reported as failed
without being run: they are delivered again, in order, after the failed one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from ripple.observability import count, logger, metrics, tracer
from ripple.streams import StreamChange


class RecordSkipped(Exception):
    """Not attempted because an earlier record of the same batch failed."""


class PartialCommit(Exception):
    """A :class:`ChangeBatch` commit that applied its first ``applied`` changes and failed on
    the next (the cause is chained): the batch is delivered again from that change."""

    def __init__(self, applied: int) -> None:
        super().__init__(f"applied {applied} change(s), then failed")
        self.applied = applied


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
        return self._process_with(self._handle, event, context)

    def _process_with(
        self, handle: Callable[[StreamChange], None], event: dict[str, Any], context: Any
    ) -> dict[str, Any]:
        invocation = _Invocation(handle)
        count("StreamBatches")
        response = process_partial_response(
            event=event,
            record_handler=invocation.record_handler,
            processor=invocation.processor,
            context=context,
        )
        return dict(response)


class ChangeBatch(Protocol):
    """Changes gathered from one stream batch, applied together (one round trip)."""

    def add(self, change: StreamChange) -> None:
        """Take one change (no I/O: it is applied by :meth:`commit`); raise if it is bad."""

    def commit(self) -> None:
        """Apply every change added, in order; raise if they could not all be applied
        (:class:`PartialCommit` if the first ones were, any other exception if none may
        be assumed applied)."""


class BatchedStreamConsumer(InOrderStreamConsumer):
    """Gathers a whole stream batch into a :class:`ChangeBatch` and commits it once.

    Records are added in order, with the in-order failure rule (a bad record and those after
    it are reported failed; the ones before it are committed). If the commit fails, the
    records from the first one not known to be applied (:class:`PartialCommit`; else the
    first of the batch) are reported failed and Lambda delivers them again: the changes must
    be idempotent (applying some of them twice changes nothing).
    """

    def __init__(self, open_batch: Callable[[], ChangeBatch]) -> None:
        super().__init__(lambda change: None)  # each invocation adds to its own batch instead
        self._open_batch = open_batch

    def process(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        batch = self._open_batch()
        response = self._process_with(batch.add, event, context)
        try:
            batch.commit()
        except Exception as exc:
            applied = exc.applied if isinstance(exc, PartialCommit) else 0
            count("StreamBatchCommitsFailed")
            logger.exception("stream batch failed after %d applied change(s); retrying the rest", applied)
            sequence_numbers = [str(r["dynamodb"]["SequenceNumber"]) for r in event.get("Records", [])]
            # Lambda resumes a stream from the lowest failed sequence number: that one is enough.
            failed = sequence_numbers[applied : applied + 1]
            return {"batchItemFailures": [{"itemIdentifier": n} for n in failed]}
        return response


def lambda_stream_handler(
    handle: Callable[[StreamChange], None] | None = None,
    *,
    open_batch: Callable[[], ChangeBatch] | None = None,
) -> Callable[[dict[str, Any], Any], Any]:
    """The Lambda entry point for a stream consumer, with Powertools logging, tracing and
    metrics stacked on it; build it once per container, at import. ``handle`` takes one
    change at a time; ``open_batch`` gathers a batch's changes and applies them together."""
    if open_batch is not None:
        consumer: InOrderStreamConsumer = BatchedStreamConsumer(open_batch)
    elif handle is not None:
        consumer = InOrderStreamConsumer(handle)
    else:
        raise TypeError("lambda_stream_handler needs handle or open_batch")

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
