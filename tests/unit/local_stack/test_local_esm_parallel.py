"""ParallelizationFactor in the local runner, against an in-memory stream shard.

What Lambda documents for DynamoDB Streams with more than one concurrent batch per shard:
up to N batches of a shard in flight, records of one item (partition + sort key) always in
order, never in two concurrent batches. What the runner adds where AWS is silent (esm.py's
docstring): items are routed to N lanes by a hash of their key, a failing batch holds back
its own lane only, and the checkpoint moves only past records that are finished with no
unfinished record before them.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ripple_local.esm import (
    CheckpointStore,
    MappingConfig,
    RetryBackoff,
    StreamEventSourceMapping,
    lane_of,
    ordering_key,
)
from ripple_local.lambda_context import LambdaContextFactory

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024-01-01T00:00:00.000"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:failures"
SHARD = "shard-0"


def keys(pk: str, sk: str = "s") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


@dataclass
class FakeStream:
    """One open shard: GetShardIterator (TRIM_HORIZON, LATEST, AFTER_SEQUENCE_NUMBER) and
    GetRecords over records appended by the test, each with the item keys it names."""

    records: list[tuple[int, dict[str, Any], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, item_keys: dict[str, Any], event_name: str = "INSERT", sequence: int | None = None) -> int:
        """Append a record; its sequence number is the next one unless ``sequence`` names it."""
        with self.lock:
            sequence = 100 + len(self.records) if sequence is None else sequence
            self.records.append((sequence, item_keys, event_name))
            return sequence

    def describe_stream(self, StreamArn: str, **_: Any) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": SHARD}]}}

    def get_shard_iterator(
        self, StreamArn: str, ShardId: str, ShardIteratorType: str, SequenceNumber: str | None = None
    ) -> dict[str, str]:
        with self.lock:
            numbers = [n for n, _, _ in self.records]
        if ShardIteratorType == "TRIM_HORIZON":
            position = 0
        elif ShardIteratorType == "LATEST":
            position = len(numbers)
        else:
            position = numbers.index(int(str(SequenceNumber))) + 1
        return {"ShardIterator": str(position)}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        position = int(ShardIterator)
        with self.lock:
            chosen = self.records[position : position + Limit]
        records = [
            {
                "eventID": f"e{n}",
                "eventName": name,
                "dynamodb": {
                    "ApproximateCreationDateTime": datetime(2024, 1, 1, tzinfo=UTC),
                    "Keys": item_keys,
                    "SequenceNumber": str(n),
                    "SizeBytes": 10,
                    "StreamViewType": "KEYS_ONLY",
                },
            }
            for n, item_keys, name in chosen
        ]
        return {"Records": records, "NextShardIterator": str(position + len(chosen))}


@dataclass
class FakeSqs:
    sent: list[dict[str, Any]] = field(default_factory=list)

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"http://sqs/{QueueName}"}

    def send_message(self, QueueUrl: str, MessageBody: str) -> None:
        self.sent.append(json.loads(MessageBody))


class Recorder:
    """A handler that records, per invocation, which records it got and how many batches
    were running at the same moment, sleeping ``delay()`` seconds in between."""

    def __init__(self, delay: Any = lambda: 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.running: list[set[str]] = []  # item keys of the batches running now
        self.most_concurrent = 0
        self.overlaps: list[set[str]] = []  # item keys found in two concurrent batches
        self.processed: list[tuple[str, int]] = []  # (item key, sequence number) as finished
        self.fail: dict[int, int] = {}  # sequence number -> failures still to report
        self.finished: set[int] = set()
        self.attempts: list[tuple[int, bool]] = []  # (sequence number, succeeded), in time order

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = event["Records"]
        batch = {ordering_key(r) for r in records}
        with self.lock:
            for other in self.running:
                if other & batch:
                    self.overlaps.append(other & batch)
            self.running.append(batch)
            self.most_concurrent = max(self.most_concurrent, len(self.running))
        try:
            failures = []
            for record in records:
                time.sleep(self.delay())
                sequence = int(record["dynamodb"]["SequenceNumber"])
                with self.lock:
                    if self.fail.get(sequence, 0) > 0:
                        self.fail[sequence] -= 1
                        self.attempts.append((sequence, False))
                        failures.append({"itemIdentifier": str(sequence)})
                        break  # as Ripple's consumer does: the rest of the batch waits
                    self.attempts.append((sequence, True))
                    self.processed.append((ordering_key(record), sequence))
                    self.finished.add(sequence)
            if failures:  # the records after a failure were not run: report them too
                index = [int(r["dynamodb"]["SequenceNumber"]) for r in records].index(
                    int(failures[0]["itemIdentifier"])
                )
                failures = [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in records[index:]]
            return {"batchItemFailures": failures}
        finally:
            with self.lock:
                self.running.remove(batch)


class WatchedCheckpoints(CheckpointStore):
    """Checks, at every commit, that no unfinished record is at or before the checkpoint."""

    def __init__(self, state_dir: Path, recorder: Recorder, stream: FakeStream) -> None:
        super().__init__(state_dir)
        self.recorder, self.stream = recorder, stream
        self.violations: list[tuple[str, list[int]]] = []
        self.parked: set[int] = set()

    def put(self, mapping_id: str, shard_id: str, sequence_number: str) -> None:
        with self.recorder.lock:
            finished = set(self.recorder.finished) | self.parked
        skipped = [n for n, _, _ in self.stream.records if n <= int(sequence_number) and n not in finished]
        if skipped:
            self.violations.append((sequence_number, skipped))
        super().put(mapping_id, shard_id, sequence_number)


def mapping(
    stream: FakeStream,
    handler: Any,
    checkpoints: CheckpointStore,
    factor: int,
    batch_size: int = 3,
    retries: int = -1,
    sqs: FakeSqs | None = None,
    backoff: RetryBackoff | None = None,
    **properties: Any,
) -> StreamEventSourceMapping:
    return StreamEventSourceMapping(
        function_name="fn",
        handler=handler,
        stream_arn=ARN,
        properties={
            "Stream": ARN,
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": batch_size,
            "ParallelizationFactor": factor,
            "MaximumRetryAttempts": retries,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            **({"DestinationConfig": {"OnFailure": {"Destination": QUEUE_ARN}}} if sqs else {}),
            **properties,
        },
        streams_client=stream,
        sqs_client=sqs,
        checkpoint_store=checkpoints,
        context_factory=LambdaContextFactory("fn"),
        retry_backoff=backoff or RetryBackoff(0.005, 2.0, 0.02),
        idle_sleep_s=0.005,
        max_idle_sleep_s=0.02,
    )


def keys_on_lanes(factor: int, per_lane: int = 1) -> list[list[dict[str, Any]]]:
    """Item keys grouped by the lane they hash to (``per_lane`` of each lane)."""
    lanes: list[list[dict[str, Any]]] = [[] for _ in range(factor)]
    n = 0
    while any(len(lane) < per_lane for lane in lanes):
        item = keys(f"user{n}")
        lane = lanes[lane_of({"dynamodb": {"Keys": item}}, factor)]
        if len(lane) < per_lane:
            lane.append(item)
        n += 1
    return lanes


def in_order_per_item(processed: list[tuple[str, int]]) -> bool:
    by_item: dict[str, list[int]] = defaultdict(list)
    for item, sequence in processed:
        by_item[item].append(sequence)
    return all(sequences == sorted(sequences) for sequences in by_item.values())


def test_parallelization_factor_is_read_and_bounded_as_lambda_bounds_it() -> None:
    assert MappingConfig.from_properties({"Stream": ARN}).parallelization_factor == 1
    assert (
        MappingConfig.from_properties({"Stream": ARN, "ParallelizationFactor": "4"}).parallelization_factor
        == 4
    )
    for bad in (0, 11):
        with pytest.raises(ValueError, match="ParallelizationFactor"):
            MappingConfig.from_properties({"Stream": ARN, "ParallelizationFactor": bad})


def test_the_item_key_is_partition_and_sort_key_and_its_lane_is_stable() -> None:
    a, b = {"dynamodb": {"Keys": keys("u1", "p1")}}, {"dynamodb": {"Keys": keys("u1", "p2")}}
    assert ordering_key(a) != ordering_key(b)  # same partition key, two items
    reordered = {"dynamodb": {"Keys": {"sk": {"S": "p1"}, "pk": {"S": "u1"}}}}
    assert ordering_key(reordered) == ordering_key(a)
    assert lane_of(a, 1) == 0
    assert [lane_of(a, 10) for _ in range(3)] == [lane_of(a, 10)] * 3
    assert len({lane_of({"dynamodb": {"Keys": keys(f"u{n}")}}, 4) for n in range(40)}) == 4


def test_up_to_n_batches_of_one_shard_run_at_once_never_two_with_the_same_item(tmp_path: Path) -> None:
    # Given a shard holding records of 12 items, 3 on each of 4 lanes, and a handler that takes a while
    stream = FakeStream()
    for _ in range(3):
        for lane in keys_on_lanes(4, per_lane=3):
            for item in lane:
                stream.put(item)
    recorder = Recorder(delay=lambda: 0.01)
    runner = mapping(stream, recorder, CheckpointStore(tmp_path), factor=4, batch_size=3)
    # When the runner drains the shard
    handled = runner.drain()
    # Then all 36 records were delivered, 4 batches were in flight at once, never more
    assert handled == 36 and len(recorder.processed) == 36
    assert recorder.most_concurrent == 4
    # ... no item was in two concurrent batches, and the checkpoint is on the last record
    assert recorder.overlaps == []
    assert runner.checkpoints.get(runner.mapping_id, SHARD) == str(stream.records[-1][0])
    assert runner.stats.records_ok == 36 and runner.stats.batches >= 12


def test_with_factor_1_a_shard_is_one_batch_at_a_time(tmp_path: Path) -> None:
    stream = FakeStream()
    for lane in keys_on_lanes(4, per_lane=3):
        for item in lane:
            stream.put(item)
    recorder = Recorder(delay=lambda: 0.002)
    mapping(stream, recorder, CheckpointStore(tmp_path), factor=1, batch_size=3).drain()
    assert recorder.most_concurrent == 1
    assert [sequence for _, sequence in recorder.processed] == [n for n, _, _ in stream.records]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_items_records_run_in_order_under_random_delays(tmp_path: Path, seed: int) -> None:
    # Given 300 changes to 15 items, interleaved at random, and a handler with random delays
    rng = random.Random(seed)
    stream = FakeStream()
    items = [keys(f"user{n % 5}", f"post{n}") for n in range(15)]  # 5 partition keys, 15 items
    for _ in range(300):
        stream.put(rng.choice(items), rng.choice(["INSERT", "MODIFY", "REMOVE"]))
    delays = random.Random(seed + 100)
    lock = threading.Lock()

    def delay() -> float:
        with lock:
            return delays.uniform(0, 0.002)

    recorder = Recorder(delay=delay)
    checkpoints = WatchedCheckpoints(tmp_path, recorder, stream)
    runner = mapping(stream, recorder, checkpoints, factor=5, batch_size=4)
    # When the polling thread delivers them (as `up` runs it)
    runner.start()
    deadline = time.monotonic() + 30
    while len(recorder.processed) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.stop()
    # Then every record ran exactly once, each item's records in stream order ...
    assert sorted(sequence for _, sequence in recorder.processed) == [n for n, _, _ in stream.records]
    assert in_order_per_item(recorder.processed)
    assert recorder.overlaps == []
    # ... batches did run concurrently, and no checkpoint ever covered an unfinished record
    assert recorder.most_concurrent > 1
    assert checkpoints.violations == []


def test_a_failing_record_holds_back_its_lane_while_the_others_go_on(tmp_path: Path) -> None:
    # Given items on two lanes; the first record of lane A's item fails until all of lane B is done
    (a_item,), (b_item,) = keys_on_lanes(2, per_lane=1)
    stream = FakeStream()
    poison = stream.put(a_item)
    a_after = [stream.put(a_item) for _ in range(2)]
    b_records = [stream.put(b_item) for _ in range(6)]
    recorder = Recorder()
    recorder.fail[poison] = 10**6

    def release_once_lane_b_is_done() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with recorder.lock:
                if set(b_records) <= recorder.finished:
                    recorder.fail[poison] = 0
                    return
            time.sleep(0.002)

    releaser = threading.Thread(target=release_once_lane_b_is_done)
    releaser.start()
    checkpoints = WatchedCheckpoints(tmp_path, recorder, stream)
    runner = mapping(stream, recorder, checkpoints, factor=2, batch_size=2)
    # When the shard drains (it would time out if lane B waited for lane A)
    runner.drain()
    releaser.join()
    # Then lane B ran to its end while A was retrying ...
    order = [sequence for _, sequence in recorder.processed]
    assert order.index(poison) > max(order.index(n) for n in b_records)
    assert runner.stats.retries >= 1 and runner.stats.records_failed == 0
    # ... A's later records waited for the failing one (item order), and all ran once
    assert order.index(poison) < order.index(a_after[0]) < order.index(a_after[1])
    assert sorted(order) == [n for n, _, _ in stream.records]
    # ... and the checkpoint never moved past the failing record before it succeeded
    assert checkpoints.violations == []
    assert runner.checkpoints.get(runner.mapping_id, SHARD) == str(stream.records[-1][0])


def test_the_checkpoint_stays_before_a_retrying_record_while_later_lanes_finish(tmp_path: Path) -> None:
    # Given lane A's first record failing until released, and lane B's records after it
    (a_item,), (b_item,) = keys_on_lanes(2, per_lane=1)
    stream = FakeStream()
    first_b = stream.put(b_item)
    poison = stream.put(a_item)
    later_b = [stream.put(b_item) for _ in range(4)]
    recorder = Recorder()
    recorder.fail[poison] = 10**6
    runner = mapping(stream, recorder, WatchedCheckpoints(tmp_path, recorder, stream), factor=2, batch_size=2)
    runner.start()
    try:
        # When lane B has finished everything
        deadline = time.monotonic() + 10
        while not set(later_b) <= recorder.finished and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(later_b) <= recorder.finished
        # Then the shard's checkpoint is the last record before the failing one, not lane B's last
        time.sleep(0.05)
        assert runner.checkpoints.get(runner.mapping_id, SHARD) == str(first_b)
        assert runner.in_flight
        # ... and once the failure clears, it moves to the end
        with recorder.lock:
            recorder.fail[poison] = 0
        deadline = time.monotonic() + 10
        while runner.checkpoints.get(runner.mapping_id, SHARD) != str(later_b[-1]):
            assert time.monotonic() < deadline, runner.checkpoints.get(runner.mapping_id, SHARD)
            time.sleep(0.01)
    finally:
        runner.stop()


def test_a_record_out_of_retries_is_parked_and_its_item_goes_on_in_order(tmp_path: Path) -> None:
    # Given lane A's first record failing forever, 2 retries and a failure queue
    (a_item,), (b_item,) = keys_on_lanes(2, per_lane=1)
    stream = FakeStream()
    poison = stream.put(a_item)
    a_next = stream.put(a_item)
    b_records = [stream.put(b_item) for _ in range(3)]
    recorder = Recorder()
    recorder.fail[poison] = 10**6
    sqs = FakeSqs()
    checkpoints = WatchedCheckpoints(tmp_path, recorder, stream)
    # (retries 0.1 s apart: lane B's three quick batches run in between)
    runner = mapping(
        stream, recorder, checkpoints, factor=2, batch_size=1, retries=2, sqs=sqs, backoff=RetryBackoff(0.1)
    )
    checkpoints.parked = {poison}
    # When it drains
    runner.drain()
    # Then the poison record alone went to the queue, after 1 + 2 invocations ...
    [message] = sqs.sent
    info = message["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        str(poison),
        str(poison),
        1,
    )
    assert message["requestContext"]["approximateInvokeCount"] == 3
    # ... the item's next record ran only after it was given up on; the other lane ran meanwhile
    assert [ok for sequence, ok in recorder.attempts if sequence == poison] == [False] * 3
    last_poison_attempt = max(i for i, (sequence, _) in enumerate(recorder.attempts) if sequence == poison)
    assert recorder.attempts.index((a_next, True)) > last_poison_attempt
    assert recorder.attempts.index((b_records[-1], True)) < last_poison_attempt
    assert set(recorder.finished) == {a_next, *b_records}
    assert runner.stats.records_failed == 1 and runner.stats.sent_to_failure_queue == 1
    assert runner.checkpoints.get(runner.mapping_id, SHARD) == str(stream.records[-1][0])
    assert checkpoints.violations == []


def test_filtered_records_are_finished_at_once_and_a_trailing_one_is_checkpointed(tmp_path: Path) -> None:
    (a_item,), (b_item,) = keys_on_lanes(2, per_lane=1)
    stream = FakeStream()
    stream.put(a_item, "INSERT")
    stream.put(b_item, "MODIFY")
    stream.put(b_item, "INSERT")
    last = stream.put(a_item, "MODIFY")
    recorder = Recorder()
    runner = mapping(
        stream,
        recorder,
        CheckpointStore(tmp_path),
        factor=2,
        FilterCriteria={"Filters": [{"Pattern": '{"eventName": ["INSERT", "REMOVE"]}'}]},
    )
    assert runner.drain() == 4
    assert len(recorder.processed) == 2 and runner.stats.filtered == 2
    assert runner.checkpoints.get(runner.mapping_id, SHARD) == str(last)


def test_a_sequence_number_handed_out_twice_does_not_stall_the_checkpoint(tmp_path: Path) -> None:
    # moto rolls a cancelled transaction back by restoring the table, stream included, from a
    # copy, and numbers the next records from there: numbers already read come again, for
    # other records. (Once, in CI, a drain then waited forever on a record it had finished.)
    lanes = keys_on_lanes(2, per_lane=3)
    stream = FakeStream()
    items = [lanes[0][0], lanes[1][0], lanes[0][1], lanes[1][1], lanes[0][2], lanes[1][2]]
    for item, sequence in zip(items, [100, 101, 102, 101, 102, 103], strict=True):
        stream.put(item, sequence=sequence)
    recorder = Recorder()
    both_101s = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # The first record waits until the other lane has finished both records numbered 101
        sequence = int(event["Records"][0]["dynamodb"]["SequenceNumber"])
        if sequence == 100:
            both_101s.wait(5)
        response = recorder(event, context)
        if [n for _, n in recorder.processed].count(101) == 2:
            both_101s.set()
        return response

    runner = mapping(stream, handler, CheckpointStore(tmp_path), factor=2, batch_size=1)
    assert runner.drain(timeout=5) == 6
    assert len(recorder.processed) == 6 and not runner.in_flight
    assert runner.checkpoints.get(runner.mapping_id, SHARD) == "103"
    assert runner.drain(timeout=5) == 0


def test_a_stop_mid_flight_loses_nothing_and_the_restart_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    # Given many records on 3 lanes and a slow handler, stopped while batches are in flight
    stream = FakeStream()
    lanes = keys_on_lanes(3, per_lane=2)
    for n in range(60):
        stream.put(lanes[n % 3][n % 2])
    first = Recorder(delay=lambda: 0.003)
    runner = mapping(stream, first, CheckpointStore(tmp_path), factor=3, batch_size=2)
    runner.start()
    while len(first.processed) < 15:
        time.sleep(0.005)
    runner.stop()
    checkpoint = int(runner.checkpoints.get(runner.mapping_id, SHARD) or 0)
    assert checkpoint < stream.records[-1][0]
    # When a new runner (a restarted process) drains from the checkpoints on disk
    second = Recorder()
    mapping(stream, second, CheckpointStore(tmp_path), factor=3, batch_size=2).drain()
    # Then it delivered exactly the records after the checkpoint, each item in order, and
    # together the two runs covered every record (some twice: at-least-once, never skipped)
    assert sorted(s for _, s in second.processed) == [n for n, _, _ in stream.records if n > checkpoint]
    assert in_order_per_item(second.processed)
    assert {s for _, s in first.processed} | {s for _, s in second.processed} == {
        n for n, _, _ in stream.records
    }
