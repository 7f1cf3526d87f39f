"""Crash recovery: the stack process killed (SIGKILL) while fan-out is in progress, then
restarted with the same state directory, resumes each stream from its checkpoint.

moto and Redis are run by the test itself (``EmulatorProcess`` / ``RedisProcess``) and handed
to ``up`` as ``--emulator-url`` / ``--redis-url``, so only the runner process dies and the
data survives it (``up`` started without them would own them as children, and they would
go down with it, taking the tables along).

Then, for every follower and every post: exactly one feed item, none missing; and the
restarted runner delivered exactly the posts-stream records after the checkpoint committed
before the kill - nothing committed was delivered again, nothing after it was skipped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.stack import write_overlay_root
from ripple.ids import new_ulid
from ripple_local.aws import Endpoints, client
from ripple_local.emulators import DEFAULT_EMULATOR, start_emulators
from ripple_local.processes import RedisProcess, free_port
from tests.e2e.client import MEASUREMENTS, Api

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STACK_NAME = "ripple-local"
FOLLOWERS = 20
# Posts-stream batches of up to 50 (BatchSize), each fanned out to 21 feeds in one go: enough
# that the kill lands mid-way.
POSTS = 600
START_DEADLINE_S = 120.0
CONVERGENCE_DEADLINE_S = 120.0


@dataclass
class Services:
    endpoints: Endpoints
    redis: RedisProcess
    state_dir: Path

    @property
    def dynamodb(self) -> Any:
        return client("dynamodb", self.endpoints)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Emulators and Redis that outlive any ``up`` process started against them."""
    emulators = start_emulators(DEFAULT_EMULATOR, tmp_path / "emulators")
    try:
        redis = RedisProcess.start_on_free_port(state_dir=tmp_path / "redis")
        try:
            yield Services(emulators.endpoints, redis, tmp_path / "state")
        finally:
            redis.stop()
    finally:
        emulators.stop()


class Up:
    """``python -m ripple_local up`` on the given services, as a subprocess."""

    def __init__(self, services: Services, log: Path, root: Path) -> None:
        self.api_port, self.metrics_port = free_port(), free_port()
        self.api = Api(f"http://127.0.0.1:{self.api_port}")
        self.log = log
        cmd = [
            sys.executable, "-m", "ripple_local", "up",
            "--stack-name", STACK_NAME,
            "--api-port", str(self.api_port),
            "--metrics-port", str(self.metrics_port),
            "--emulator-url", services.endpoints.default,
            "--dynamodb-url", services.endpoints.dynamodb,
            "--redis-url", services.redis.url,
            "--state-dir", str(services.state_dir),
            "--root-dir", str(root),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers/ripple"), str(ROOT / "infra/local")])
        env["PASSWORD_SCRYPT_N"] = str(2**12)  # quick sign-ups; the API's own default is 2**14
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"up exited early:\n{log.read_text()[-4000:]}")
            try:
                if self.api.call("GET", "/health/live").status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"up did not come up:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final checkpoint - a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self._log.closed:
            self._log.close()

    def delivered(self, function: str, event_source: str) -> float:
        """ripple_stream_records_delivered for one runner, from this process's exporter."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = set(sample.labels.values())
                if (
                    sample.name == "ripple_stream_records_delivered_total"
                    and {function, event_source} <= labels
                ):
                    total += sample.value
        return total


def _feed_post_ids(services: Services, reader: str, author: str) -> list[str]:
    """The reader's feed items from ``author`` (a list: a duplicate would show twice)."""
    table = f"{STACK_NAME}-FeedTable"
    items: list[str] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "user_id = :u",
        "FilterExpression": "author_id = :a",
        "ExpressionAttributeValues": {":u": {"S": reader}, ":a": {"S": author}},
        "ConsistentRead": True,
    }
    while True:
        page = services.dynamodb.query(**kwargs)
        items += [item["post_id"]["S"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _insert_posts(services: Services, author: str, count: int) -> list[str]:
    """Posts written straight into the table (the API would rate-limit one author at 60/min):
    the stream records are what fan-out reads, whoever wrote the rows."""
    table = f"{STACK_NAME}-PostsTable"
    ids = []
    for start in range(0, count, 25):
        requests_ = []
        for i in range(start, min(start + 25, count)):
            now = int(time.time() * 1000)
            post_id = new_ulid(now)
            ids.append(post_id)
            requests_.append(
                {"PutRequest": {"Item": {
                    "author_id": {"S": author}, "post_id": {"S": post_id}, "text": {"S": f"post {i}"},
                    "created_at": {"N": str(now)}, "like_count": {"N": "0"},
                }}}
            )  # fmt: skip
        response = services.dynamodb.batch_write_item(RequestItems={table: requests_})
        assert not response.get("UnprocessedItems"), response
    return ids


def _posts_checkpoint(state_dir: Path) -> str | None:
    """The FanoutFunction posts-stream checkpoint in the state directory (one shard in moto)."""
    path = state_dir / "checkpoints.json"
    if not path.exists():
        return None
    mappings = json.loads(path.read_text())["mappings"]
    for mapping_id, shards in mappings.items():
        function, _, stream_arn = mapping_id.partition("|")
        if function == f"{STACK_NAME}-FanoutFunction" and f"/{STACK_NAME}-PostsTable/" in stream_arn:
            sequences = [s.get("sequence_number") for s in shards.values() if s.get("sequence_number")]
            assert len(sequences) <= 1, shards
            return sequences[0] if sequences else None
    return None


def _posts_stream_sequences(services: Services) -> list[int]:
    """Every record's sequence number on the posts stream, from its beginning."""
    dynamodb, streams = services.dynamodb, client("dynamodbstreams", services.endpoints)
    arn = dynamodb.describe_table(TableName=f"{STACK_NAME}-PostsTable")["Table"]["LatestStreamArn"]
    sequences: list[int] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            sequences += [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return sequences


def _committed(sequences: list[int], checkpoint: str | None) -> int:
    """How many of the stream's records the checkpoint covers."""
    return 0 if checkpoint is None else sum(1 for s in sequences if s <= int(checkpoint))


def test_a_runner_killed_mid_fanout_resumes_from_its_checkpoint(services: Services, tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    # One batch of a shard at a time (FanoutParallelizationFactor 1): with four lanes a batch
    # of posts is fanned out so fast that under load all POSTS were done before the kill.
    root = tmp_path / "root"
    write_overlay_root(root, {"FanoutParallelizationFactor": "1"})
    first = Up(services, log, root)
    try:
        # Given an author with FOLLOWERS followers (through the API) ...
        author = first.api.signup("author")
        followers = [first.api.signup("follower") for _ in range(FOLLOWERS)]
        for f in followers:
            r = first.api.call("POST", f"/users/{author['user_id']}/follow", f["token"])
            assert r.status_code == 200, r.text
        time.sleep(0.05)  # posts strictly after every follow (fan-out skips later followers)

        # ... when POSTS posts arrive and the stack is killed while fanning them out, as soon
        # as a batch is committed (the watched follower may then hold posts of a batch not yet
        # committed). The kill watches from before the first post: fan-out keeps pace with a
        # slow insert under load, so waiting for the insert to finish could find it all done.
        watched = followers[-1]["user_id"]
        at_kill: dict[str, int] = {}

        def kill_at_the_first_commit() -> None:
            deadline = time.monotonic() + CONVERGENCE_DEADLINE_S
            while _posts_checkpoint(services.state_dir) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            at_kill["done"] = len(_feed_post_ids(services, watched, author["user_id"]))
            first.kill()

        killer = threading.Thread(target=kill_at_the_first_commit, daemon=True)
        killer.start()
        posts = _insert_posts(services, author["user_id"], POSTS)
        killer.join(CONVERGENCE_DEADLINE_S + 30)
        assert "done" in at_kill, "fan-out never started"
    finally:
        first.kill()
    sequences = _posts_stream_sequences(services)
    done = at_kill["done"]
    committed = _committed(sequences, _posts_checkpoint(services.state_dir))
    mid_batch = 0 < committed < done
    fanned_out_at_kill = len(_feed_post_ids(services, watched, author["user_id"]))
    checkpoint = _posts_checkpoint(services.state_dir)
    committed = _committed(sequences, checkpoint)
    assert fanned_out_at_kill < POSTS, "fan-out finished before the kill: make POSTS larger"
    assert 0 < committed < len(sequences), f"no checkpoint to resume from ({committed} committed)"

    # Then a restart on the same state directory (and the same services) ...
    second = Up(services, log, root)
    try:
        deadline = time.monotonic() + CONVERGENCE_DEADLINE_S
        readers = [f["user_id"] for f in followers] + [author["user_id"]]
        while True:
            counts = {r: len(_feed_post_ids(services, r, author["user_id"])) for r in readers}
            if all(c >= POSTS for c in counts.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # ... gives every follower (and the author) exactly one item per post, none missing
        for reader in readers:
            items = _feed_post_ids(services, reader, author["user_id"])
            assert len(items) == len(set(items)), f"{reader}: duplicate feed items"
            assert set(items) == set(posts), f"{reader}: {len(set(posts) - set(items))} posts missing"
        # ... and resumed after the checkpoint: it delivered exactly the records after it.
        assert _posts_stream_sequences(services) == sequences
        expected = len(sequences) - committed
        delivered = second.delivered("FanoutFunction", "PostsStream")
        assert delivered == expected, (
            f"the restarted runner delivered {delivered:.0f} posts-stream records; {expected} "
            f"follow the checkpoint ({committed} of {len(sequences)} were committed before the kill)"
        )
        MEASUREMENTS.append(
            f"restart: killed {'mid-batch' if mid_batch else 'between batches'} with "
            f"{fanned_out_at_kill}/{POSTS} posts in the watched feed and {committed}/{len(sequences)} "
            f"posts-stream records committed; the restart delivered {delivered:.0f}, no duplicates"
        )
    finally:
        second.stop()
