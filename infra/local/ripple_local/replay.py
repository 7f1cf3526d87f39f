"""Re-drive stream batches parked on the on-failure queue, once their cause is fixed.

When a batch exhausts ``MaximumRetryAttempts``, Lambda (and the local runner, ``esm.py``)
sends an *on-failure record* to the OnFailure destination: not the records themselves, but
where they are - ``DDBStreamBatchInfo`` (stream ARN, shard, first and last sequence number)
and ``requestContext.functionArn``. Replaying means: read those records back from the stream
(they stay readable for the stream's retention, 24 hours on AWS), shape them exactly as the
runner does (:func:`ripple_local.esm.lambda_record`), invoke the function's real handler with
a Lambda-like context, and delete the message only if the whole batch now succeeds.

Order is kept as the runner keeps it: one function's messages of one shard are replayed
oldest first, and once one of them still fails, its later ones are held back (kept).
Kept messages are made visible again at the end, so the next run sees them at once.

A batch's records need not be contiguous in the shard: FilterCriteria kept some records
out, and with ``ParallelizationFactor`` > 1 a batch holds one lane's records only. So the
records between the first and last sequence number are read and those the mapping would not
have put in that batch are left out - filtered ones, and those of another lane (the lane of
the batch's first record, under the template's factor now; if the factor changed since, the
count no longer matches ``batchSize`` and the message is kept).

Handlers are idempotent by design (deterministic feed keys), so replaying a batch whose
records were partly applied is safe; a record replayed after later changes to the same row
is what ``check-convergence`` / ``rebuild-feed`` exist for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ripple_local.aws import region_of
from ripple_local.esm import ContextFactory, Handler, MappingConfig, lambda_record, lane_of
from ripple_local.functions import function_names, stream_event_sources
from ripple_local.lambda_context import LambdaContextFactory
from ripple_local.stack import LocalStack

__all__ = ["FailedBatch", "FailureReplayer", "ReplayResult", "read_stream_batch"]

logger = logging.getLogger(__name__)

# Kept messages stay invisible for this long during a run (so one run sees each once);
# they are released (visibility 0) when the run ends.
VISIBILITY_TIMEOUT_S = 120
# An open shard may answer GetRecords with no records before later ones; give up after this
# many empty answers in a row.
MAX_EMPTY_READS = 10
RECORDS_PER_READ = 1000  # GetRecords' maximum


@dataclass(frozen=True)
class FailedBatch:
    """One on-failure record, parsed."""

    queue_url: str
    message_id: str
    receipt_handle: str
    function_name: str
    stream_arn: str
    shard_id: str
    start_sequence: str
    end_sequence: str
    batch_size: int

    @classmethod
    def parse(cls, queue_url: str, message: Mapping[str, Any]) -> FailedBatch:
        """Raises ValueError for a message that is not a DynamoDB stream on-failure record."""
        try:
            body = json.loads(message["Body"])
            info = body["DDBStreamBatchInfo"]
            function_arn = str(body["requestContext"]["functionArn"])
            return cls(
                queue_url=queue_url,
                message_id=str(message["MessageId"]),
                receipt_handle=str(message["ReceiptHandle"]),
                function_name=function_arn.rsplit(":function:", 1)[-1].split(":", 1)[0],
                stream_arn=str(info["streamArn"]),
                shard_id=str(info["shardId"]),
                start_sequence=str(info["startSequenceNumber"]),
                end_sequence=str(info["endSequenceNumber"]),
                batch_size=int(info.get("batchSize") or 0),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a DynamoDB stream on-failure record: {exc!r}") from exc

    @property
    def mapping(self) -> tuple[str, str, str]:
        """Whose records, from where: each function reads each shard in its own order."""
        return self.function_name, self.stream_arn, self.shard_id

    @property
    def order(self) -> tuple[str, str, str, int]:
        return (*self.mapping, int(self.start_sequence))


@dataclass(frozen=True)
class ReplayResult:
    """What happened to one message: replayed (and deleted) or kept, and why."""

    message_id: str
    function: str | None  # the template's logical id, when known
    shard_id: str | None
    start_sequence: str | None
    end_sequence: str | None
    records: int
    replayed: bool
    detail: str

    def describe(self) -> str:
        what = "replayed" if self.replayed else "kept"
        where = f"{self.function or '?'} {self.shard_id or '?'} {self.start_sequence}..{self.end_sequence}"
        return f"{what:<8} {self.message_id}  {where} ({self.records} records): {self.detail}"


class _Kept(Exception):
    """A message that cannot be replayed now; the text says why."""

    def __init__(self, detail: str, records: int = 0) -> None:
        super().__init__(detail)
        self.detail = detail
        self.records = records


def read_stream_batch(
    streams: Any, stream_arn: str, shard_id: str, start_sequence: str, end_sequence: str
) -> list[dict[str, Any]]:
    """The records ``start..end`` of a shard, Lambda-shaped (as the runner delivers them)."""
    iterator: str | None = streams.get_shard_iterator(
        StreamArn=stream_arn,
        ShardId=shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=start_sequence,
    )["ShardIterator"]
    end = int(end_sequence)
    records: list[dict[str, Any]] = []
    empty = 0
    while iterator is not None and empty < MAX_EMPTY_READS:
        response = streams.get_records(ShardIterator=iterator, Limit=RECORDS_PER_READ)
        iterator = response.get("NextShardIterator")
        raw_records = response.get("Records", [])
        empty = 0 if raw_records else empty + 1
        for raw in raw_records:
            if int(raw["dynamodb"]["SequenceNumber"]) > end:
                return records
            records.append(lambda_record(raw, stream_arn, region_of(streams)))
            if int(raw["dynamodb"]["SequenceNumber"]) == end:
                return records
    return records


class FailureReplayer:
    """Replays the on-failure queues of one stack's stream event sources."""

    def __init__(
        self,
        *,
        sqs: Any,
        streams: Any,
        queue_urls: list[str],
        stack_name: str,
        handlers: Callable[[str], Handler],
        contexts: Mapping[str, ContextFactory],
        streams_of: Mapping[str, frozenset[str]],
        visibility_timeout_s: int = VISIBILITY_TIMEOUT_S,
        configs: Mapping[tuple[str, str], MappingConfig] | None = None,
    ) -> None:
        self._sqs = sqs
        self._streams = streams
        self.queue_urls = queue_urls
        self._stack_name = stack_name
        self._handlers = handlers
        self._contexts = contexts
        self._streams_of = streams_of
        self._visibility = visibility_timeout_s
        # (function id, stream ARN) -> the mapping's configuration: which records it delivers
        # (FilterCriteria) and in how many lanes (ParallelizationFactor). Absent: every record.
        self._configs = dict(configs or {})

    @classmethod
    def for_stack(cls, stack: LocalStack, handlers: Mapping[str, Handler] | None = None) -> FailureReplayer:
        """Replay a prepared stack's failure queues. ``handlers`` (by function logical id)
        replace the functions' real ones, e.g. in tests wired to their own container."""
        if stack.clients is None or stack.resolver is None or stack.resources is None:
            raise RuntimeError("the stack must be prepared (create_resources) first")
        clients, resolver = stack.clients, stack.resolver
        overrides = dict(handlers or {})
        queue_urls: list[str] = []
        streams_of: dict[str, set[str]] = {}
        configs: dict[tuple[str, str], MappingConfig] = {}
        for source in stream_event_sources(stack.template):
            properties = resolver.resolve(source.properties)
            streams_of.setdefault(source.function_id, set()).add(str(properties["Stream"]))
            config = configs[(source.function_id, str(properties["Stream"]))] = MappingConfig.from_properties(
                properties
            )
            destination = config.on_failure_destination
            if destination is not None:
                url = str(clients.sqs.get_queue_url(QueueName=destination.split(":")[5])["QueueUrl"])
                if url not in queue_urls:
                    queue_urls.append(url)
        contexts = {
            function_id: LambdaContextFactory.from_template(
                stack.template, function_id, stack.stack_name, stack.region, stack.resources.account_id
            )
            for function_id in function_names(stack.template)
        }

        def handler(function_id: str) -> Handler:
            return overrides[function_id] if function_id in overrides else stack.handler(function_id)

        return cls(
            sqs=clients.sqs,
            streams=clients.dynamodbstreams,
            queue_urls=queue_urls,
            stack_name=stack.stack_name,
            handlers=handler,
            contexts=contexts,
            streams_of={k: frozenset(v) for k, v in streams_of.items()},
            configs=configs,
        )

    # ------------------------------------------------------------------ running
    def replay(self) -> list[ReplayResult]:
        """Replay every message on the failure queues; returns one result per message."""
        results: list[ReplayResult] = []
        batches: list[FailedBatch] = []
        kept: list[tuple[str, str]] = []  # (queue url, receipt handle) to release at the end
        for queue_url in self.queue_urls:
            for message in self._receive_all(queue_url):
                try:
                    batches.append(FailedBatch.parse(queue_url, message))
                except ValueError as exc:
                    kept.append((queue_url, str(message["ReceiptHandle"])))
                    results.append(
                        ReplayResult(str(message["MessageId"]), None, None, None, None, 0, False, str(exc))
                    )
        blocked: set[tuple[str, str, str]] = set()  # mappings with a batch still failing
        try:
            for batch in sorted(batches, key=lambda b: b.order):
                result = self._replay_one(batch, blocked)
                results.append(result)
                if result.replayed:
                    self._sqs.delete_message(QueueUrl=batch.queue_url, ReceiptHandle=batch.receipt_handle)
                else:
                    blocked.add(batch.mapping)
                    kept.append((batch.queue_url, batch.receipt_handle))
        finally:
            for queue_url, receipt in kept:
                with contextlib.suppress(ClientError):
                    self._sqs.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
                    )
        return results

    def _receive_all(self, queue_url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            response = self._sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=self._visibility,
            )
            received = response.get("Messages", [])
            if not received:
                return messages
            messages.extend(received)

    def _replay_one(self, batch: FailedBatch, blocked: set[tuple[str, str, str]]) -> ReplayResult:
        function_id = self._function_id(batch.function_name)

        def result(replayed: bool, detail: str, records: int) -> ReplayResult:
            return ReplayResult(
                batch.message_id,
                function_id,
                batch.shard_id,
                batch.start_sequence,
                batch.end_sequence,
                records,
                replayed,
                detail,
            )

        try:
            if function_id is None:
                raise _Kept(f"function {batch.function_name!r} is not part of stack {self._stack_name!r}")
            if batch.stream_arn not in self._streams_of.get(function_id, frozenset()):
                raise _Kept(f"{function_id} has no event source on {batch.stream_arn}")
            if batch.mapping in blocked:
                raise _Kept("held back: an earlier batch of this shard still fails (order is kept)")
            records = self._records(batch, self._configs.get((function_id, batch.stream_arn)))
            self._invoke(function_id, records)
        except _Kept as kept:
            return result(False, kept.detail, kept.records)
        return result(True, "the whole batch succeeded; message deleted", len(records))

    def _function_id(self, function_name: str) -> str | None:
        prefix = f"{self._stack_name}-"
        if not function_name.startswith(prefix):
            return None
        logical_id = function_name[len(prefix) :]
        return logical_id if logical_id in self._contexts else None

    def _records(self, batch: FailedBatch, config: MappingConfig | None = None) -> list[dict[str, Any]]:
        try:
            records = read_stream_batch(
                self._streams, batch.stream_arn, batch.shard_id, batch.start_sequence, batch.end_sequence
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            raise _Kept(f"cannot read the records back from the stream ({code}): {error}") from error
        if config is not None and records:
            lanes = config.parallelization_factor
            lane = lane_of(records[0], lanes)
            records = [r for r in records if config.delivers(r) and lane_of(r, lanes) == lane]
        found = records[-1]["dynamodb"]["SequenceNumber"] if records else None
        if not records or records[0]["dynamodb"]["SequenceNumber"] != batch.start_sequence:
            raise _Kept("the batch's first record is no longer in the stream (trimmed?)", len(records))
        if found != batch.end_sequence or (batch.batch_size and len(records) != batch.batch_size):
            raise _Kept(
                f"the stream returned {len(records)} of {batch.batch_size} records "
                f"({batch.start_sequence}..{found}); not replaying a partial batch",
                len(records),
            )
        return records

    def _invoke(self, function_id: str, records: list[dict[str, Any]]) -> None:
        context = self._contexts[function_id]()
        try:
            # The handler's metrics (EMF) print to stdout; keep stdout for the command's report.
            with contextlib.redirect_stdout(sys.stderr):
                response = self._handlers(function_id)({"Records": records}, context)
        except Exception as exc:
            logger.warning("replay of %d records to %s raised", len(records), function_id, exc_info=True)
            raise _Kept(f"the handler raised {exc!r}", len(records)) from exc
        failures = response.get("batchItemFailures") if isinstance(response, Mapping) else None
        if failures:  # absent, None or empty means success, as for the runner
            listed = failures if isinstance(failures, list) else [failures]
            first = listed[0].get("itemIdentifier") if isinstance(listed[0], Mapping) else listed[0]
            raise _Kept(f"{len(listed)} of {len(records)} records still fail (first: {first})", len(records))
