"""A local DynamoDB Streams event source mapping that behaves like Lambda's.

Neither moto nor LocalStack fires event source mappings without Docker, so the local stack
reads the streams itself through the DynamoDB Streams API and calls the handlers in-process.
It copies the parts of Lambda's poller that Ripple's correctness depends on: in-order
delivery per shard, checkpoints, partial batch responses, retries, bisection and the on-failure
destination - so a handler that is wrong about them fails locally, not in production.

Retry accounting (documented by AWS only in outline, so fixed here):

* An exception, or an invalid ``batchItemFailures`` answer, fails the whole batch.
* With ``ReportBatchItemFailures``, records before the lowest reported sequence number are
  committed and the rest is retried.
* With ``BisectBatchOnFunctionError`` a whole-batch failure splits the batch in two halves,
  processed in order, and a partial response splits it at the reported record (a response
  naming the first record splits nothing: that is a retry). Splits are free (AWS: "splitting a
  batch does not consume the retry quota") and immediate.
* Every other repeat of the same records is a retry: it counts towards
  ``MaximumRetryAttempts`` (-1 = forever) and waits a small exponential backoff.
* When the quota is spent, the on-failure record goes to the OnFailure queue, the checkpoint
  moves past the batch and the shard goes on, so one poison record cannot block it.

Concurrent batches per shard (``ParallelizationFactor`` N, 1-10). AWS documents the
guarantee, not the machinery: "When you increase the number of concurrent batches per shard,
Lambda still ensures in-order processing at the item (partition and sort key) level"
(https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html); SAM describes the factor as
allocating "multiple virtual shards" and the launch post shows records routed to them by key
(https://aws.amazon.com/blogs/compute/new-aws-lambda-scaling-controls-for-kinesis-and-dynamodb-event-sources/).
So, with N > 1:

* every record goes to one of N lanes (virtual shards) by a hash of its item key - the
  record's ``Keys``, partition *and* sort key: the documented unit, so two items that share
  a partition key may run concurrently and in either order, as on AWS;
* each lane delivers its records in shard order, one batch (up to BatchSize) at a time, so up
  to N batches of a shard are in flight and two batches holding the same item never are;
* retries, bisection, partial batch responses and the on-failure queue work per lane, as
  above: a failing batch holds back its own lane (its item and whatever else hashes there)
  while the other lanes go on - AWS's "repeated errors block processing of the affected
  shard" is, with lanes, the lane; reading ahead stops once ``LOOKAHEAD_BATCHES`` batches per
  lane wait undelivered, or ``MAX_OUTSTANDING`` records wait for the checkpoint, so a lane
  that never recovers does stall the shard in the end;
* the shard's checkpoint moves only past records that are done (committed, parked or
  filtered out) and have no unfinished record before them, so a restart redelivers every
  unfinished record (and may redeliver finished ones after it: at-least-once, as on AWS).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import ClientError
from moto.events.models import EventPattern

from ripple_local.aws import region_of
from ripple_local.checkpoints import CheckpointStore

__all__ = [
    "CheckpointStore",
    "MappingConfig",
    "MappingStats",
    "RetryBackoff",
    "StreamEventSourceMapping",
    "StreamObserver",
    "lambda_record",
    "lane_of",
    "ordering_key",
]

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
ContextFactory = Callable[[], Any]


class StreamObserver(Protocol):
    """Receives what only the poller knows, as Lambda's own metrics would show it (for
    example ``ripple_local.metrics_exporter.StreamRunnerMetrics``). Calls must be cheap; an
    observer that raises is logged and ignored, never allowed to disturb delivery."""

    def delivered(self, records: int, ages_ms: Sequence[float]) -> None:
        """One invocation with ``records`` records; the age of each whose creation time is known."""

    def retried(self, records: int) -> None:
        """Records about to be delivered again (a retry that counts against MaximumRetryAttempts)."""

    def bisected(self) -> None:
        """A failed batch was split in two."""

    def gave_up(self, records: int, sent_to_failure_queue: bool) -> None:
        """Records that exhausted their retries: sent on-failure, or dropped without a destination."""

    def poll_failed(self) -> None:
        """A polling round failed (emulator down, stream gone)."""


# Event source mapping properties this runner honours; others are accepted with a warning.
_EMULATED = frozenset(
    {
        "Stream",
        "StartingPosition",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "MaximumRetryAttempts",
        "BisectBatchOnFunctionError",
        "FunctionResponseTypes",
        "DestinationConfig",
        "Enabled",
        "FilterCriteria",
        "ParallelizationFactor",
    }
)

MAX_PARALLELIZATION_FACTOR = 10  # Lambda's limit for Kinesis and DynamoDB Streams
# With ParallelizationFactor > 1, records are read ahead of the lanes until this many full
# batches per lane wait to be delivered; and never more than MAX_OUTSTANDING records past the
# checkpoint (bounded memory: a lane that keeps failing stalls the shard in the end).
LOOKAHEAD_BATCHES = 2
MAX_OUTSTANDING = 10_000
MAX_GET_RECORDS = 1000  # GetRecords' Limit maximum


_REOPEN_ERRORS = frozenset({"ExpiredIteratorException", "TrimmedDataAccessException"})
_MAX_REOPENS = 3  # per fetch; a shard that keeps refusing fails the poll (and is retried later)


def _filter_patterns(criteria: Any) -> tuple[str, ...]:
    """The Pattern strings of a FilterCriteria property, each checked to parse."""
    if not criteria:
        return ()
    patterns = tuple(str(f["Pattern"]) for f in criteria.get("Filters") or [])
    for pattern in patterns:
        _pattern(pattern)  # a malformed pattern fails at start, as CloudFormation would
    return patterns


@functools.lru_cache(maxsize=64)
def _pattern(pattern: str) -> EventPattern:
    return EventPattern.load(pattern)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


@dataclass(frozen=True)
class MappingConfig:
    """The event properties of a ``Type: DynamoDB`` event, with Lambda's defaults."""

    batch_size: int = 100
    starting_position: str = "LATEST"
    maximum_retry_attempts: int = -1
    bisect_on_error: bool = False
    report_batch_item_failures: bool = False
    on_failure_destination: str | None = None
    batching_window_s: float = 0.0
    enabled: bool = True
    # FilterCriteria's patterns (JSON strings). A record is delivered when any matches; the
    # others are dropped and the checkpoint moves past them, as Lambda does.
    filter_patterns: tuple[str, ...] = ()
    # Concurrent batches per shard; records of one item always stay in one lane, in order.
    parallelization_factor: int = 1

    def delivers(self, record: Mapping[str, Any]) -> bool:
        """Whether a Lambda-shaped stream record passes the filters (none: every record).
        Patterns are EventBridge's syntax, which Lambda event filtering shares; moto's
        matcher of that syntax evaluates them."""
        if not self.filter_patterns:
            return True
        event: Any = dict(record)
        return any(_pattern(p).matches_event(event) for p in self.filter_patterns)

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> MappingConfig:
        """Parse template properties (already resolved; strings or native values both work)."""
        ignored = sorted(set(properties) - _EMULATED)
        if ignored:
            logger.warning("event source mapping properties not emulated locally: %s", ", ".join(ignored))
        destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if destination is not None and not isinstance(destination, str):
            raise ValueError(f"OnFailure Destination must be resolved to an ARN first, got {destination!r}")
        position = str(properties.get("StartingPosition", "LATEST"))
        if position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError(f"StartingPosition {position!r} is not valid for DynamoDB Streams")
        factor = int(properties.get("ParallelizationFactor", 1))
        if not 1 <= factor <= MAX_PARALLELIZATION_FACTOR:
            raise ValueError(f"ParallelizationFactor must be 1-{MAX_PARALLELIZATION_FACTOR}, got {factor}")
        return cls(
            batch_size=int(properties.get("BatchSize", 100)),
            starting_position=position,
            maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
            bisect_on_error=_as_bool(properties.get("BisectBatchOnFunctionError", False)),
            report_batch_item_failures="ReportBatchItemFailures"
            in (properties.get("FunctionResponseTypes") or []),
            on_failure_destination=destination,
            batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
            enabled=_as_bool(properties.get("Enabled", True)),
            filter_patterns=_filter_patterns(properties.get("FilterCriteria")),
            parallelization_factor=factor,
        )


@dataclass(frozen=True)
class RetryBackoff:
    """Delay before retry ``n`` (1-based): ``initial_s * multiplier**(n-1)``, capped."""

    initial_s: float = 0.1
    multiplier: float = 2.0
    maximum_s: float = 5.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry of a batch."""
        return min(self.maximum_s, self.initial_s * self.multiplier ** max(0, retry - 1))


@dataclass
class MappingStats:
    """Counters of one mapping, for status output and later metrics."""

    batches: int = 0  # handler invocations
    records_ok: int = 0  # records committed after a successful invocation
    records_failed: int = 0  # records given up on after their retries (sent on-failure or dropped)
    retries: int = 0  # re-invocations counted against MaximumRetryAttempts
    bisections: int = 0
    sent_to_failure_queue: int = 0
    poll_errors: int = 0  # GetRecords/DescribeStream failures (emulator down, stream gone)
    filtered: int = 0  # records FilterCriteria kept from the function (never delivered)

    def snapshot(self) -> dict[str, int]:
        """A plain dict copy of the counters."""
        return asdict(self)


def _wire_format(value: Any) -> Any:
    """Attribute values as Lambda's JSON event carries them: binary as base64 text."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _wire_format(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_wire_format(item) for item in value]
    return value


def _aware(moment: datetime) -> datetime:
    """``moment``, a naive one read as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_utc(stamp: Any) -> datetime | None:
    """A stream record's ApproximateCreationDateTime as an aware UTC datetime: boto3 parses it
    into one; epoch seconds (a number) and a naive datetime are read as UTC; anything else
    is None (no stamp)."""
    if isinstance(stamp, datetime):
        return _aware(stamp)
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return datetime.fromtimestamp(stamp, UTC)
    return None


def lambda_record(raw: Mapping[str, Any], stream_arn: str, region: str | None = None) -> dict[str, Any]:
    """Turn a GetRecords record (boto3 shape) into the record Lambda passes to the handler.

    boto3 parses ApproximateCreationDateTime into a datetime and binary values into bytes;
    Lambda sends epoch seconds and base64 text. ``awsRegion`` is the stack's ``region`` when
    given (DynamoDB Local's ARNs always say ``ddblocal``, moto's ``us-east-1``), else the ARN's.
    """
    source = raw["dynamodb"]
    image: dict[str, Any] = {}
    created = source.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        image["ApproximateCreationDateTime"] = int(_aware(created).timestamp())
    elif created is not None:
        image["ApproximateCreationDateTime"] = created
    for key in ("Keys", "NewImage", "OldImage"):
        if key in source:
            image[key] = _wire_format(source[key])
    for key in ("SequenceNumber", "SizeBytes", "StreamViewType"):
        if key in source:
            image[key] = source[key]
    record: dict[str, Any] = {
        "eventID": raw.get("eventID"),
        "eventName": raw.get("eventName"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region or stream_arn.split(":")[3],
        "dynamodb": image,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in raw:  # TTL deletions carry the DynamoDB service identity
        record["userIdentity"] = raw["userIdentity"]
    return record


def ordering_key(record: Mapping[str, Any]) -> str:
    """The unit Lambda keeps in order for a DynamoDB stream: the item, i.e. the record's
    ``Keys`` (partition and sort key), as canonical JSON."""
    keys = (record.get("dynamodb") or {}).get("Keys") or {}
    return json.dumps(keys, sort_keys=True, separators=(",", ":"))


def lane_of(record: Mapping[str, Any], lanes: int) -> int:
    """The lane (virtual shard, 0..lanes-1) of a Lambda-shaped record: a stable hash of its
    item key, the same in every process and run."""
    if lanes <= 1:
        return 0
    digest = hashlib.blake2b(ordering_key(record).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % lanes


@dataclass(frozen=True)
class _Record:
    """A Lambda-shaped record plus its arrival time (the stream's ApproximateCreationDateTime,
    kept for the on-failure record) and when this runner read it (for the iterator age)."""

    event: dict[str, Any]
    arrival: datetime | None
    ticket: int = -1  # its place in a _Pipeline's reading order (ParallelizationFactor > 1 only)
    read_at: datetime | None = None

    @property
    def sequence_number(self) -> str:
        return str(self.event["dynamodb"]["SequenceNumber"])


@dataclass
class _Batch:
    records: list[_Record]
    retries: int = 0  # retries already spent on these records


@dataclass(frozen=True)
class _Outcome:
    failed_at: int | None  # index of the first record to retry; None = success
    whole_batch: bool = False  # the invocation failed (raised, or answered nonsense)
    function_error: str | None = None  # "Unhandled" when the handler raised
    request_id: str = ""


class _Pipeline:
    """One shard's records between reading and checkpointing when batches run concurrently
    (ParallelizationFactor > 1). Every field is guarded by the mapping's ``_work_lock``."""

    def __init__(self, lanes: int) -> None:
        self.queues: list[deque[_Record]] = [deque() for _ in range(lanes)]  # read, not yet delivered
        self.busy: list[bool] = [False] * lanes  # a lane thread is delivering this lane's records
        # Records are tracked by the order they were read in, not by sequence number: stock
        # moto hands out a shard's sequence numbers again after it rolls back a transaction
        # (ripple_local.moto_server prevents it), and a repeated number must not stall the
        # checkpoint. On AWS numbers are unique and read in order, and both ways agree; with
        # numbers out of order the checkpoint can step back, which redelivers, never skips.
        self.order: deque[tuple[int, str]] = deque()  # (ticket, sequence number) not yet checkpointed
        self.done: set[int] = set()  # tickets of ``order`` that are finished
        self.tickets = itertools.count()
        self.failure: BaseException | None = None  # a lane failed unexpectedly: dispatch no more

    @property
    def outstanding(self) -> int:
        """Records read and not yet covered by the checkpoint."""
        return len(self.order)

    @property
    def queued(self) -> int:
        """Records read and waiting for their lane."""
        return sum(len(queue) for queue in self.queues)

    @property
    def idle(self) -> bool:
        """Nothing read is unfinished and no lane is delivering."""
        return not self.order and not any(self.busy)

    def read(self, sequence_number: str) -> int:
        """Note a record read; its ticket."""
        ticket = next(self.tickets)
        self.order.append((ticket, sequence_number))
        return ticket

    def finish(self, tickets: Iterable[int]) -> str | None:
        """Mark records finished; the new checkpoint (the sequence number of the last record
        of the finished prefix of ``order``), or None when the prefix did not move."""
        self.done.update(tickets)
        last = None
        while self.order and self.order[0][0] in self.done:
            ticket, last = self.order.popleft()
            self.done.discard(ticket)
        return last


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    iterator: str | None = None
    ended: bool = False
    opened_at: float = 0.0  # when ``iterator``'s chain was last opened from the checkpoint
    # ParallelizationFactor > 1 only: reading runs ahead of the checkpoint.
    pipeline: _Pipeline | None = None
    read_position: str | None = None  # the last record read (iterators re-open after it)
    exhausted: bool = False  # a closed shard was read to its end (ended once all is finished)


class _Stopped(Exception):
    """Raised inside a poll when stop() interrupts a retry backoff."""


def _utc_iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _stamp_granularity_s(stamp: datetime) -> float:
    """How coarse an ApproximateCreationDateTime is, read from the stamp itself: DynamoDB Local
    rounds it down to the minute (five puts 0.7 s apart from 07:16:18 to 07:16:21 all read
    07:16:00), AWS to the second, moto not at all. A stamp on a whole minute is taken as
    minute-rounded, one on a whole second as second-rounded, any other as exact. (A
    second-rounded stamp that falls on a whole minute is taken as minute-rounded: its age,
    while the runner is behind, can then read up to 59 s low; only local runners use this.)"""
    if stamp.microsecond:
        return 0.0
    return 60.0 if stamp.second == 0 else 1.0


def estimated_creation(stamp: datetime, read_at: datetime | None) -> datetime:
    """The latest time a record can have been created: its ApproximateCreationDateTime
    (``stamp``, a naive time is UTC) is a time rounded down, and the record cannot have been
    created after this runner read it (``read_at``). Ages taken from it are lower bounds,
    exact to within the runner's poll interval while it keeps up; from the raw stamp,
    DynamoDB Local's records would look up to a minute old the moment they are written."""
    stamp = _aware(stamp)
    latest = stamp + timedelta(seconds=_stamp_granularity_s(stamp))
    if read_at is not None and read_at < latest:
        latest = read_at
    return max(stamp, latest)


def _ages_ms(records: Sequence[_Record], now: datetime) -> list[float]:
    """Milliseconds since each record was created, as :func:`estimated_creation` bounds it:
    Lambda's IteratorAge."""
    return [
        (now - estimated_creation(record.arrival, record.read_at)).total_seconds() * 1000
        for record in records
        if record.arrival is not None
    ]


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class StreamEventSourceMapping:
    """Polls one DynamoDB stream and invokes one handler with Lambda's batching semantics.

    ``properties`` are the template event's Properties, resolved (the OnFailure destination
    must be an SQS queue ARN). ``poll_once`` does one round over all shards; ``start`` runs
    rounds in a thread until ``stop``; ``drain`` is for tests.
    """

    def __init__(
        self,
        function_name: str,
        handler: Handler,
        stream_arn: str,
        properties: Mapping[str, Any],
        streams_client: Any,
        sqs_client: Any,
        checkpoint_store: CheckpointStore,
        context_factory: ContextFactory,
        retry_backoff: RetryBackoff | None = None,
        *,
        name: str | None = None,
        idle_sleep_s: float = 0.05,
        max_idle_sleep_s: float = 0.25,
        shard_refresh_s: float = 5.0,
        observer: StreamObserver | None = None,
    ) -> None:
        self.function_name = function_name
        self.handler = handler
        self.stream_arn = stream_arn
        self.config = MappingConfig.from_properties(properties)
        self.streams = streams_client
        self.sqs = sqs_client
        self.checkpoints = checkpoint_store
        self.context_factory = context_factory
        self.retry_backoff = retry_backoff or RetryBackoff()
        self.name = name or function_name
        self.idle_sleep_s = idle_sleep_s
        self.max_idle_sleep_s = max_idle_sleep_s
        self.shard_refresh_s = shard_refresh_s
        self.stats = MappingStats()
        self.region = region_of(streams_client)
        self.observer = observer  # may be attached later (the local stack's metrics exporter)
        # On AWS a function may have one mapping per stream, so the pair identifies it.
        self.mapping_id = f"{function_name}|{stream_arn}"
        self.function_arn = str(getattr(context_factory(), "invoked_function_arn", function_name))
        self.failure_queue_url = self._queue_url(self.config.on_failure_destination)
        self._shards: dict[str, _Shard] = {}
        self._shards_refreshed_at = float("-inf")
        self._shards_stale = True  # a shard ended (its children may have appeared) or drain() asked
        self._poll_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        # ParallelizationFactor > 1: lane threads, the lock of the shards' pipelines, and an
        # event they set whenever a batch finishes (the poller reads ahead again at once).
        self._work_lock = threading.Lock()
        self._wake = threading.Event()
        self._lane_threads: list[threading.Thread] = []
        self._lookahead = LOOKAHEAD_BATCHES * self.config.parallelization_factor * self.config.batch_size
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StreamEventSourceMapping({self.name!r}, {self.stream_arn!r})"

    def _queue_url(self, destination: str | None) -> str | None:
        if destination is None:
            return None
        parts = destination.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise ValueError(f"{self.name}: only SQS on-failure destinations are emulated, got {destination}")
        return str(self.sqs.get_queue_url(QueueName=parts[5])["QueueUrl"])

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Poll in a daemon thread until stop()."""
        if self._thread is not None and self._thread.is_alive():
            return
        if not self.config.enabled:
            logger.info("%s: mapping disabled in the template, not polling", self.name)
            return
        self._stop_event = threading.Event()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop_event,), name=f"esm-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; an interrupted batch is not committed and is redelivered next time."""
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("%s: poller still busy after %.1fs (a handler is running)", self.name, timeout)
            self._thread = None
        for thread in list(self._lane_threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._poll_lock:
            self._discard_pipelines()
        # A fresh event, so poll_once()/drain() still work (with retries) after a stop.
        self._stop_event = threading.Event()

    @property
    def running(self) -> bool:
        """True while the polling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def run(self, stop_event: threading.Event) -> None:
        """Poll until ``stop_event`` is set, sleeping a little longer after each empty round.

        The sleep starts at ``idle_sleep_s`` and doubles up to ``max_idle_sleep_s`` while the
        stream is idle (default 0.25 s, Lambda's documented base rate of 4 polls a second).
        Idle polling must stay slow: moto keeps every shard iterator it ever issued (about 2 KB
        per GetRecords call, never freed), so a tight idle loop grows the emulator steadily.
        """
        self._stop_event = stop_event
        sleep = self.idle_sleep_s
        while not stop_event.is_set():
            try:
                handled = self.poll_once()
            except Exception:
                self._count("poll_errors")
                self._observe("poll_failed")
                logger.exception("%s: polling %s failed", self.name, self.stream_arn)
                handled = 0
                sleep = self.max_idle_sleep_s
            if handled:
                sleep = self.idle_sleep_s
                continue
            # A lane finishing a batch (ParallelizationFactor > 1) or stop() wakes this early.
            self._wake.wait(sleep)
            self._wake.clear()
            sleep = min(self.max_idle_sleep_s, sleep * 2)

    def drain(self, timeout: float = 10.0) -> int:
        """Poll until a round yields no records; return how many were handled.

        Safe while the thread runs: rounds never overlap, so once this returns every record
        written before the call has been handled (committed, or given up on).
        """
        deadline = time.monotonic() + timeout
        total = 0
        self._shards_stale = True  # see shards created just before the call, too
        with self._poll_lock:
            for shard in self._shards.values():
                self._reopen_from_checkpoint(shard)  # a cached iterator may be stale (see _poll_shard)
        while True:
            handled = self.poll_once()
            total += handled
            if handled == 0:
                if not self.in_flight:
                    return total
                self._wake.wait(self.idle_sleep_s)  # lanes still delivering what was read
                self._wake.clear()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: not drained after {timeout}s ({self._progress()})")

    def _progress(self) -> str:
        """Where each shard stands, for the message of a drain that timed out."""
        parts = []
        with self._work_lock:
            for shard in list(self._shards.values()):  # the polling thread may add shards
                checkpoint = self.checkpoints.get(self.mapping_id, shard.shard_id)
                state = f"{shard.shard_id}: checkpoint {checkpoint}"
                pipeline = shard.pipeline
                if pipeline is not None:
                    state += (
                        f", read to {shard.read_position}, {pipeline.outstanding} unfinished"
                        f" (first {pipeline.order[0][1] if pipeline.order else None},"
                        f" {len(pipeline.done)} done out of order), {pipeline.queued} queued,"
                        f" lanes busy {[i for i, busy in enumerate(pipeline.busy) if busy]}"
                    )
                parts.append(state)
        return "; ".join(parts) or "no shards"

    @property
    def in_flight(self) -> bool:
        """Records read but not finished (ParallelizationFactor > 1; always False otherwise)."""
        with self._work_lock:
            return any(s.pipeline is not None and not s.pipeline.idle for s in self._shards.values())

    # ------------------------------------------------------------------ polling

    def poll_once(self) -> int:
        """One GetRecords round over every shard whose parent is done; returns records handled."""
        with self._poll_lock:
            self._refresh_shards()
            handled = 0
            parallel = self.config.parallelization_factor > 1
            for shard in self._ready_shards():
                try:
                    handled += self._poll_shard_parallel(shard) if parallel else self._poll_shard(shard)
                except _Stopped:
                    shard.iterator = None  # resume from the checkpoint next time
                    break
            return handled

    def _refresh_shards(self) -> None:
        due = time.monotonic() - self._shards_refreshed_at >= self.shard_refresh_s
        if self._shards and not due and not self._shards_stale:
            return
        described: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = self.streams.describe_stream(**request)["StreamDescription"]
            described.extend(description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                break
            request["ExclusiveStartShardId"] = last
        for item in described:
            shard_id = item["ShardId"]
            if shard_id not in self._shards:
                self._shards[shard_id] = _Shard(
                    shard_id,
                    item.get("ParentShardId"),
                    ended=self.checkpoints.is_ended(self.mapping_id, shard_id),
                )
                logger.debug("%s: tracking shard %s", self.name, shard_id)
        live = {item["ShardId"] for item in described}
        for shard_id in [
            shard_id for shard_id, shard in self._shards.items() if shard_id not in live and shard.ended
        ]:
            del self._shards[shard_id]  # trimmed away after we finished it
        self._shards_refreshed_at = time.monotonic()
        self._shards_stale = False

    def _ready_shards(self) -> list[_Shard]:
        """Open shards whose parent is finished or gone: children wait, to keep key order."""
        ready = []
        for shard in self._shards.values():
            if shard.ended:
                continue
            parent = self._shards.get(shard.parent_id) if shard.parent_id else None
            if parent is None or parent.ended:
                ready.append(shard)
        return ready

    def _open_iterator(self, shard: _Shard) -> str:
        # Reading ahead of the checkpoint (ParallelizationFactor > 1) resumes after what it read.
        checkpoint = shard.read_position or self.checkpoints.get(self.mapping_id, shard.shard_id)
        request = {"StreamArn": self.stream_arn, "ShardId": shard.shard_id}
        if checkpoint is not None:
            try:
                response = self.streams.get_shard_iterator(
                    **request, ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=checkpoint
                )
                return str(response["ShardIterator"])
            except ClientError as error:
                if _error_code(error) not in ("TrimmedDataAccessException", "ValidationException"):
                    raise
                logger.warning(
                    "%s: checkpoint %s of shard %s is no longer readable (%s); restarting at TRIM_HORIZON",
                    self.name,
                    checkpoint,
                    shard.shard_id,
                    _error_code(error),
                )
                position = "TRIM_HORIZON"
        else:
            position = self.config.starting_position
        response = self.streams.get_shard_iterator(**request, ShardIteratorType=position)
        return str(response["ShardIterator"])

    def _fetch(
        self, shard: _Shard, limit: int | None = None, enough: int | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """GetRecords up to ``limit`` (BatchSize), waiting up to the batching window until
        ``enough`` (``limit``) records are there."""
        limit = self.config.batch_size if limit is None else limit
        enough = limit if enough is None else min(enough, limit)
        if shard.iterator is None:
            iterator = self._open_iterator(shard)
            shard.opened_at = time.monotonic()
        else:
            iterator = shard.iterator
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.config.batching_window_s
        reopened = 0
        while True:
            try:
                response = self.streams.get_records(ShardIterator=iterator, Limit=limit - len(records))
            except ClientError as error:
                # An expired iterator (15 minutes on AWS) is re-opened from the checkpoint. So is
                # one DynamoDB Local refuses as trimmed because it was opened while the shard
                # was still empty; nothing was delivered from it, so nothing is skipped.
                if _error_code(error) not in _REOPEN_ERRORS or records or reopened >= _MAX_REOPENS:
                    raise
                reopened += 1
                iterator = self._open_iterator(shard)
                continue
            records.extend(response.get("Records", []))
            next_iterator = response.get("NextShardIterator")
            if not records or next_iterator is None or len(records) >= enough or time.monotonic() >= deadline:
                return records, next_iterator
            iterator = next_iterator
            self._stop_event.wait(min(self.idle_sleep_s, max(0.0, deadline - time.monotonic())))

    def _poll_shard(self, shard: _Shard) -> int:
        try:
            raw_records, next_iterator = self._fetch(shard)
            if raw_records:
                records = self._records(raw_records)
                kept = [r for r in records if self.config.delivers(r.event)]
                self._count("filtered", len(records) - len(kept))
                if kept:
                    self._process(shard, kept)
                if kept[-1:] != records[-1:]:  # trailing records filtered out: move past them
                    self.checkpoints.put(self.mapping_id, shard.shard_id, records[-1].sequence_number)
        except BaseException:
            shard.iterator = None  # re-read from the checkpoint: nothing uncommitted is lost
            raise
        shard.iterator = next_iterator
        if next_iterator is None:
            shard.ended = True
            self._shards_stale = True
            self.checkpoints.mark_ended(self.mapping_id, shard.shard_id)
            logger.info("%s: shard %s fully processed", self.name, shard.shard_id)
        elif not raw_records and time.monotonic() - shard.opened_at >= self.shard_refresh_s:
            # An idle shard re-opens its iterator from the checkpoint every shard_refresh_s.
            # moto replaces a table (and its stream shard) with a copy when it rolls back a
            # cancelled transaction, and iterators issued before that never see another
            # record; on AWS iterators expire after 15 minutes anyway.
            self._reopen_from_checkpoint(shard)
        return len(raw_records)

    def _reopen_from_checkpoint(self, shard: _Shard) -> None:
        """Drop the cached iterator so the next poll re-opens it after the checkpoint. Only
        with a checkpoint: before the first commit, a LATEST position exists only in it. Not
        while records read ahead of the checkpoint are unfinished (they would be read twice)."""
        with self._work_lock:
            if shard.pipeline is not None and not shard.pipeline.idle:
                return
        if self.checkpoints.get(self.mapping_id, shard.shard_id) is not None:
            shard.iterator = None
            shard.read_position = None

    # ------------------------------------------------------------------ concurrent batches

    def _poll_shard_parallel(self, shard: _Shard) -> int:
        """Read ahead into the lanes, start idle lanes, and checkpoint what has finished."""
        factor = self.config.parallelization_factor
        with self._work_lock:
            if shard.pipeline is None:
                shard.pipeline = _Pipeline(factor)
            pipeline = shard.pipeline
            failure = pipeline.failure
            if failure is not None and any(pipeline.busy):
                return 0  # let the other lanes finish their batches, then start over
            room = min(self._lookahead - pipeline.queued, MAX_OUTSTANDING - pipeline.outstanding)
        if failure is not None:
            self._discard_pipeline(shard)
            raise failure
        raw_records: list[dict[str, Any]] = []
        if room > 0 and not shard.exhausted:
            try:
                raw_records, next_iterator = self._fetch(
                    shard, limit=min(room, MAX_GET_RECORDS), enough=self.config.batch_size
                )
            except BaseException:
                shard.iterator = None  # re-opened after the last record read
                raise
            shard.iterator = next_iterator
            if raw_records:
                self._enqueue(shard, pipeline, raw_records)
            if next_iterator is None:
                shard.exhausted = True
        self._dispatch(shard, pipeline)
        with self._work_lock:
            idle = pipeline.idle
        if idle and shard.exhausted:
            shard.ended = True
            shard.pipeline, shard.read_position = None, None
            self._shards_stale = True
            self.checkpoints.mark_ended(self.mapping_id, shard.shard_id)
            logger.info("%s: shard %s fully processed", self.name, shard.shard_id)
        elif idle and not raw_records and time.monotonic() - shard.opened_at >= self.shard_refresh_s:
            self._reopen_from_checkpoint(shard)  # as _poll_shard does, once nothing is in flight
        return len(raw_records)

    def _records(self, raw_records: Sequence[dict[str, Any]]) -> list[_Record]:
        """GetRecords records (boto3 shape) as Lambda-shaped records, stamped as read now."""
        read_at = datetime.now(UTC)
        return [
            _Record(
                lambda_record(raw, self.stream_arn, self.region),
                as_utc(raw["dynamodb"].get("ApproximateCreationDateTime")),
                read_at=read_at,
            )
            for raw in raw_records
        ]

    def _enqueue(self, shard: _Shard, pipeline: _Pipeline, raw_records: Sequence[dict[str, Any]]) -> None:
        """Queue read records on their lanes; filtered ones are finished at once."""
        records = self._records(raw_records)
        shard.read_position = records[-1].sequence_number
        factor = self.config.parallelization_factor
        filtered: list[int] = []
        with self._work_lock:
            for record in records:
                ticket = pipeline.read(record.sequence_number)
                if self.config.delivers(record.event):
                    pipeline.queues[lane_of(record.event, factor)].append(replace(record, ticket=ticket))
                else:
                    filtered.append(ticket)
            if filtered:
                self._finish_locked(shard, pipeline, filtered)
        self._count("filtered", len(filtered))

    def _dispatch(self, shard: _Shard, pipeline: _Pipeline) -> None:
        """Start a thread for every lane that has records and is not delivering yet."""
        with self._work_lock:
            if pipeline.failure is not None or self._stop_event.is_set():
                return
            lanes = [i for i, queue in enumerate(pipeline.queues) if queue and not pipeline.busy[i]]
            for lane in lanes:
                pipeline.busy[lane] = True
        self._lane_threads = [thread for thread in self._lane_threads if thread.is_alive()]
        for lane in lanes:
            thread = threading.Thread(
                target=self._run_lane,
                args=(shard, pipeline, lane, self._stop_event),
                name=f"esm-{self.name}-lane{lane}",
                daemon=True,
            )
            self._lane_threads.append(thread)
            thread.start()

    def _run_lane(self, shard: _Shard, pipeline: _Pipeline, lane: int, stop_event: threading.Event) -> None:
        """Deliver one lane's queued records, a batch at a time, in order, until it is empty."""
        try:
            while True:
                with self._work_lock:
                    queue = pipeline.queues[lane]
                    if not queue or pipeline.failure is not None or stop_event.is_set():
                        return
                    batch = [queue.popleft() for _ in range(min(self.config.batch_size, len(queue)))]
                self._process(shard, batch, done=lambda records: self._finish(shard, pipeline, records))
        except BaseException as error:
            if not isinstance(error, _Stopped):
                logger.exception("%s: lane %d of shard %s failed", self.name, lane, shard.shard_id)
            with self._work_lock:
                pipeline.failure = pipeline.failure or error
        finally:
            with self._work_lock:
                pipeline.busy[lane] = False
            self._wake.set()

    def _finish(self, shard: _Shard, pipeline: _Pipeline, records: Sequence[_Record]) -> None:
        with self._work_lock:
            self._finish_locked(shard, pipeline, [record.ticket for record in records])

    def _finish_locked(self, shard: _Shard, pipeline: _Pipeline, tickets: Sequence[int]) -> None:
        """Records are done; move the checkpoint over the finished prefix (under _work_lock,
        so checkpoints are written in order)."""
        checkpoint = pipeline.finish(tickets)
        if checkpoint is not None:
            self.checkpoints.put(self.mapping_id, shard.shard_id, checkpoint)

    def _discard_pipeline(self, shard: _Shard) -> None:
        """Forget what was read ahead: the shard is read again from its checkpoint."""
        shard.pipeline = None
        shard.iterator = None
        shard.read_position = None
        shard.exhausted = False

    def _discard_pipelines(self) -> None:
        for shard in self._shards.values():
            pipeline = shard.pipeline
            if pipeline is None:
                continue
            with self._work_lock:
                busy = any(pipeline.busy)
            if busy:
                logger.warning("%s: a lane of shard %s is still running a handler", self.name, shard.shard_id)
                continue
            self._discard_pipeline(shard)

    def _count(self, counter: str, amount: int = 1) -> None:
        """Add to a MappingStats counter (lanes run in threads of their own)."""
        with self._stats_lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + amount)

    # ------------------------------------------------------------------ batches

    def _process(
        self,
        shard: _Shard,
        records: list[_Record],
        done: Callable[[Sequence[_Record]], None] | None = None,
    ) -> None:
        """Deliver one batch completely: commit, retry, bisect or give up, in order. ``done``
        receives records once committed or given up on (default: checkpoint them)."""
        finished = done or (
            lambda finished_records: self.checkpoints.put(
                self.mapping_id, shard.shard_id, finished_records[-1].sequence_number
            )
        )
        pending: deque[_Batch] = deque([_Batch(records)])
        while pending:
            batch = pending.popleft()
            outcome = self._invoke(batch.records)
            self._count("batches")
            if outcome.failed_at is None:
                self._commit(batch.records, finished)
                continue
            completed, rest = batch.records[: outcome.failed_at], batch.records[outcome.failed_at :]
            if completed:
                self._commit(completed, finished)
            if self.config.bisect_on_error and outcome.whole_batch and len(rest) > 1:
                middle = len(rest) // 2
                pending.extendleft(
                    [_Batch(rest[middle:], batch.retries), _Batch(rest[:middle], batch.retries)]
                )
                self._count("bisections")
                self._observe("bisected")
                logger.info("%s: batch of %d failed, bisecting", self.name, len(rest))
                continue
            if self.config.bisect_on_error and not outcome.whole_batch and completed:
                pending.appendleft(_Batch(rest, batch.retries))  # split at the reported record
                continue
            limit = self.config.maximum_retry_attempts
            if limit != -1 and batch.retries >= limit:
                self._give_up(shard, rest, batch.retries + 1, outcome)
                finished(rest)
                continue
            retry = batch.retries + 1
            self._count("retries")
            self._observe("retried", len(rest))
            delay = self.retry_backoff.delay(retry)
            logger.info("%s: retry %d of %d records in %.3fs", self.name, retry, len(rest), delay)
            if self._stop_event.wait(delay):
                raise _Stopped
            pending.appendleft(_Batch(rest, retry))

    def _invoke(self, records: Sequence[_Record]) -> _Outcome:
        context = self.context_factory()
        request_id = str(getattr(context, "aws_request_id", ""))
        if self.observer is not None:
            self._observe("delivered", len(records), _ages_ms(records, datetime.now(UTC)))
        started = time.monotonic()
        try:
            response = self.handler({"Records": [record.event for record in records]}, context)
        except Exception as error:
            logger.warning(
                "%s: handler raised on %d records (%s..%s): %r",
                self.name,
                len(records),
                records[0].sequence_number,
                records[-1].sequence_number,
                error,
                exc_info=True,
            )
            return _Outcome(0, whole_batch=True, function_error="Unhandled", request_id=request_id)
        finally:
            self._warn_if_over_time(context, started)
        if not self.config.report_batch_item_failures:
            return _Outcome(None, request_id=request_id)
        return self._parse_response(response, records, request_id)

    def _warn_if_over_time(self, context: Any, started: float) -> None:
        timeout_s = getattr(context, "timeout_s", None)
        elapsed = time.monotonic() - started
        if timeout_s is not None and elapsed > float(timeout_s):
            logger.warning(
                "%s: invocation took %.1fs, over the %.0fs Timeout - AWS would have killed it",
                self.name,
                elapsed,
                float(timeout_s),
            )

    def _parse_response(self, response: Any, records: Sequence[_Record], request_id: str) -> _Outcome:
        """Lambda's partial batch response rules for streams."""
        if not isinstance(response, Mapping):
            return _Outcome(None, request_id=request_id)
        failures = response.get("batchItemFailures")
        if not failures:  # absent, None or empty: complete success
            return _Outcome(None, request_id=request_id)
        positions: dict[str, int] = {}
        for index, record in enumerate(records):  # a number twice (moto): retry from the first
            positions.setdefault(record.sequence_number, index)
        indexes = []
        for failure in failures if isinstance(failures, list) else [failures]:
            identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
            if not identifier or str(identifier) not in positions:
                logger.warning(
                    "%s: invalid batchItemFailures entry %r: whole batch failed", self.name, failure
                )
                return _Outcome(0, whole_batch=True, request_id=request_id)
            indexes.append(positions[str(identifier)])
        return _Outcome(min(indexes), request_id=request_id)

    def _commit(self, records: Sequence[_Record], finished: Callable[[Sequence[_Record]], None]) -> None:
        finished(records)
        self._count("records_ok", len(records))

    def _give_up(
        self, shard: _Shard, records: Sequence[_Record], invocations: int, outcome: _Outcome
    ) -> None:
        """Send the on-failure record (if a destination is set); the caller moves past the records."""
        if self.failure_queue_url is not None:
            message = self.failure_record(shard.shard_id, records, invocations, outcome)
            self.sqs.send_message(QueueUrl=self.failure_queue_url, MessageBody=json.dumps(message))
            self._count("sent_to_failure_queue")
            self._observe("gave_up", len(records), True)
            logger.error(
                "%s: %d records %s..%s exhausted their retries; sent to %s",
                self.name,
                len(records),
                records[0].sequence_number,
                records[-1].sequence_number,
                self.failure_queue_url,
            )
        else:
            logger.error(
                "%s: %d records %s..%s exhausted their retries and are dropped (no OnFailure destination)",
                self.name,
                len(records),
                records[0].sequence_number,
                records[-1].sequence_number,
            )
            self._observe("gave_up", len(records), False)
        self._count("records_failed", len(records))

    def _observe(self, event: str, *args: Any) -> None:
        observer = self.observer
        if observer is None:
            return
        try:
            getattr(observer, event)(*args)
        except Exception:
            logger.exception("%s: stream observer failed on %s", self.name, event)

    def failure_record(
        self, shard_id: str, records: Sequence[_Record], invocations: int, outcome: _Outcome
    ) -> dict[str, Any]:
        """The JSON document Lambda sends to an on-failure destination for a stream batch.

        ``functionError`` is "Unhandled" when the handler raised and "" when the records were
        reported failed through ``batchItemFailures`` (the invocation itself succeeded).
        """
        return {
            "requestContext": {
                "requestId": outcome.request_id or str(uuid.uuid4()),
                "functionArn": self.function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": outcome.function_error or "",
            },
            "version": "1.0",
            "timestamp": _utc_iso(datetime.now(UTC)),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": records[0].sequence_number,
                "endSequenceNumber": records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": _utc_iso(records[0].arrival),
                "approximateArrivalOfLastRecord": _utc_iso(records[-1].arrival),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
