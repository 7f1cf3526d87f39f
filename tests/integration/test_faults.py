"""Faults the pipeline must converge through: Redis going away mid-run, and a poison record
parked on the on-failure queue, then re-driven by ``replay-failures`` once fixed.

Each test runs its own stack (its own tables, queue and, for the outage, its own
redis-server) on the session's emulator, so stopping Redis or parking records cannot disturb
other tests. Its functions are wired explicitly to a container built from that stack's
environment: the real handler modules are per-process singletons bound to the session's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ripple.cache.client import create_redis
from ripple.config import Settings
from ripple.container import Container
from ripple.ids import new_ulid, ulid_timestamp_ms
from ripple.repositories.models import ALL_MODELS
from ripple.stream_processing import lambda_stream_handler
from ripple.streams import INSERT, StreamChange
from ripple_local.aws import Endpoints, client
from ripple_local.convergence import FOLLOWED, OWN, ConvergenceChecker
from ripple_local.environment import local_aws_environment
from ripple_local.esm import Handler, RetryBackoff
from ripple_local.functions import stream_event_sources
from ripple_local.processes import RedisProcess, free_port
from ripple_local.replay import FailureReplayer
from ripple_local.stack import LocalStack, runner_key
from tests.integration.support import (
    TEST_FANOUT_PAGE_SIZE,
    TEST_FEED_CACHE_MAX_ITEMS,
    TEST_HIGH_FOLLOWER_THRESHOLD,
    ensure_users,
)

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 15.0
TEST_LIMITS = {
    "FEED_CACHE_MAX_ITEMS": str(TEST_FEED_CACHE_MAX_ITEMS),
    "FANOUT_PAGE_SIZE": str(TEST_FANOUT_PAGE_SIZE),
    "HIGH_FOLLOWER_THRESHOLD": str(TEST_HIGH_FOLLOWER_THRESHOLD),
}


@dataclass
class OwnStack:
    stack: LocalStack
    container: Container
    redis: RedisProcess
    handlers: dict[str, Handler]

    @property
    def checker(self) -> ConvergenceChecker:
        return ConvergenceChecker.from_container(self.container)

    def add_runners(self) -> None:
        """One unstarted runner per template stream event, calling our handlers."""
        for source in stream_event_sources(self.stack.template):
            key = runner_key(source.function_id, source.event_name)
            self.stack.runners[key] = self.stack.make_runner(source, self.handlers[source.function_id])

    def users(self, n: int) -> list[str]:
        ids = [new_ulid() for _ in range(n)]
        ensure_users(self.container, *ids)
        return ids

    def failure_messages(self) -> list[dict[str, Any]]:
        """What is on the failure queue, left visible for others."""
        assert self.stack.endpoints is not None
        sqs = client("sqs", self.stack.endpoints)
        url = self.stack.resources.queue_urls()["StreamFailureQueue"] if self.stack.resources else ""
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return list(response.get("Messages", []))


@pytest.fixture
def own_stack(
    emulator: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[OwnStack]:
    backoff: RetryBackoff = getattr(request, "param", RetryBackoff(initial_s=0.01, maximum_s=0.02))
    for name, value in local_aws_environment(emulator).items():
        if not name.startswith("AWS_ENDPOINT_URL"):  # credentials for PynamoDB; endpoints come from settings
            monkeypatch.setenv(name, value)
    bindings = [(m, m.Meta.table_name, m.Meta.region, m.Meta.host) for m in ALL_MODELS]
    redis = RedisProcess.start_on_free_port(state_dir=tmp_path / "redis")
    stack = LocalStack(
        ROOT,
        endpoints=emulator,
        redis_url=redis.url,
        state_dir=tmp_path / "state",
        stack_name=f"faults-{uuid.uuid4().hex[:8]}",
        with_api=False,
        with_runners=False,
        with_metrics=False,
        retry_backoff=backoff,
        environ={},  # the session's os.environ stays as it is
    )
    try:
        stack.prepare()
        settings = Settings.from_env({**stack.environment, **TEST_LIMITS})
        container = Container(settings)
        container.__dict__["redis"] = fail_fast_redis(settings)  # see the xfail test at the end
        handlers = {
            "FanoutFunction": lambda_stream_handler(open_batch=container.fanout_consumer.open_batch),
            "CacheRefresherFunction": lambda_stream_handler(open_batch=container.cache_refresher.open_batch),
        }
        yield OwnStack(stack, container, redis, handlers)
    finally:
        stack.stop()
        redis.stop()
        for model, table_name, region, host in bindings:  # the container rebound them globally
            model.Meta.table_name, model.Meta.region, model.Meta.host = table_name, region, host
            model._connection = None


def fail_fast_redis(settings: Settings) -> redis.Redis:
    """create_redis() as the README describes it: one try within the 250 ms timeout."""
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {DEADLINE_S}s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class HeldBackoff(RetryBackoff):
    """Each retry waits until ``resume`` is set (at most ``hold_s``), then backs off as usual:
    the refresher's records are still being retried when Redis is back, however long the
    outage takes on a loaded machine. (A fixed backoff ran out of the template's 5 retries,
    about 6 s, when the steps before the restart took longer, and parked the records.)"""

    resume: threading.Event = field(default_factory=threading.Event)
    hold_s: float = 120.0

    def delay(self, retry: int) -> float:
        self.resume.wait(self.hold_s)
        return super().delay(retry)


OUTAGE_BACKOFF = HeldBackoff(initial_s=0.05, maximum_s=0.2)


@pytest.mark.parametrize("own_stack", [OUTAGE_BACKOFF], indirect=True)
def test_feeds_converge_through_a_redis_outage(own_stack: OwnStack) -> None:
    OUTAGE_BACKOFF.resume.clear()
    try:
        _converge_through_a_redis_outage(own_stack)
    finally:
        OUTAGE_BACKOFF.resume.set()  # never leave a runner thread held


def _converge_through_a_redis_outage(own_stack: OwnStack) -> None:
    stack, container, checker = own_stack.stack, own_stack.container, own_stack.checker
    a, b, c = own_stack.users(3)
    for follower, followee in ((b, a), (c, a), (a, b)):
        container.follow_service.follow(follower, followee)
    stack.start_runners(own_stack.handlers)  # polling threads, as under `up`
    stack.drain()
    for user in (a, b, c):
        container.feed_reader.home(user, 20)
    assert checker.check([a, b, c]).ok

    # Given Redis stops mid-run
    own_stack.redis.stop()

    # When posts keep coming, they are accepted, and feeds are served from DynamoDB (how much
    # slower is the bench's business, not a wall-clock limit here)
    posted = [container.post_service.create(a, f"during the outage {i}").post_id for i in range(3)]
    assert set(posted) <= {p.post_id for p in container.feed_reader.home(a, 20).items}  # own, at once
    posted.append(container.post_service.create(b, "b too").post_id)
    wait_until(
        lambda: {p.post_id for p in container.feed_reader.home(c, 20).items} >= set(posted[:3]),
        "fan-out to reach c's feed while Redis is down",
    )
    refresher = stack.runner("CacheRefresherFunction", "FeedStream")
    wait_until(lambda: refresher.stats.retries >= 1, "the refresher to retry its feed records")
    during = checker.check([a, b, c])
    wait_until(lambda: checker.check([a, b, c]).users[0].table_ok, "the tables to converge")
    assert not during.ok and all(u.cache.error for u in during.users)  # nothing known of Redis

    # Then, with Redis back on the same port, the retried records are delivered, not parked
    own_stack.redis.start()
    OUTAGE_BACKOFF.resume.set()
    stack.drain()
    assert refresher.stats.retries >= 1 and refresher.stats.records_failed == 0
    assert own_stack.failure_messages() == []
    # ... and once feeds are read again (Redis restarted empty), table and cache converge
    for user in (a, b, c):
        container.feed_reader.home(user, 20)
    report = checker.check([a, b, c])
    assert report.ok, report.summary()
    assert all(u.cache.cached and u.cache.complete for u in report.users)
    assert {p.post_id for p in container.feed_reader.home(b, 20).items} >= set(posted)


def test_a_poison_record_is_parked_then_replayed_once_the_handler_tolerates_it(
    own_stack: OwnStack,
) -> None:
    stack, container, checker = own_stack.stack, own_stack.container, own_stack.checker
    own_stack.add_runners()
    a, b = own_stack.users(2)
    container.follow_service.follow(b, a)
    stack.drain()

    # Given a post row without created_at, written straight to the table between good posts
    before = container.post_service.create(a, "before").post_id
    poison = new_ulid()
    dynamodb = client("dynamodb", stack.endpoints)
    posts_table = stack.table_name("PostsTable")
    dynamodb.put_item(
        TableName=posts_table,
        Item={"author_id": {"S": a}, "post_id": {"S": poison}, "text": {"S": "no created_at"}},
    )
    same_batch = container.post_service.create(a, "after, in the same batch").post_id

    # When the streams are delivered
    stack.drain()
    later = container.post_service.create(a, "after the give-up").post_id
    stack.drain()

    # Then the fan-out gave up on the poison alone after MaximumRetryAttempts (bisection split
    # the good record behind it off), and every good record was delivered
    fanout = stack.runner("FanoutFunction", "PostsStream")
    [message] = own_stack.failure_messages()
    body = json.loads(message["Body"])
    assert body["requestContext"]["functionArn"].endswith(f":function:{stack.stack_name}-FanoutFunction")
    assert body["requestContext"]["approximateInvokeCount"] == fanout.config.maximum_retry_attempts + 1
    assert body["DDBStreamBatchInfo"]["batchSize"] == 1
    assert {e.post_id for e in container.feed.page(b, 10)} == {before, same_batch, later}
    report = checker.check([a, b])  # reasons: why each missing item is expected
    assert report.for_user(a).reasons == {poison: OWN}
    assert report.for_user(b).reasons == {poison: FOLLOWED}

    # Fixing the row is not enough: a replay re-reads the stream record, and records are
    # immutable (its image still lacks created_at). The message is kept, visible again.
    dynamodb.update_item(
        TableName=posts_table,
        Key={"author_id": {"S": a}, "post_id": {"S": poison}},
        UpdateExpression="SET created_at = :t",
        ExpressionAttributeValues={":t": {"N": str(ulid_timestamp_ms(poison))}},
    )
    [kept] = FailureReplayer.for_stack(stack, own_stack.handlers).replay()
    assert not kept.replayed and "raised" in kept.detail and kept.records == 1
    assert len(own_stack.failure_messages()) == 1

    # When a fixed handler is "deployed" (one that re-reads an incomplete row) and replays it
    def tolerant(change: StreamChange) -> None:
        image = change.new_image
        if change.table == posts_table and change.event == INSERT and "created_at" not in image:
            row = container.posts.get_by_key(str(image["author_id"]), str(image["post_id"]))
            if row is not None:
                change = replace(change, new_image={**image, "created_at": row.created_at})
        container.fanout_consumer.handle(change)

    fixed = {**own_stack.handlers, "FanoutFunction": lambda_stream_handler(tolerant)}
    [replayed] = FailureReplayer.for_stack(stack, fixed).replay()

    # Then the batch succeeds, the message is deleted and every feed converges
    assert replayed.replayed and replayed.records == 1, replayed.describe()
    assert own_stack.failure_messages() == []
    stack.drain()
    for user in (a, b):
        container.feed_reader.home(user, 20)
    report = checker.check([a, b])
    assert report.ok, report.summary()
    assert {e.post_id for e in container.feed.page(b, 10)} == {before, poison, same_batch, later}


def test_replay_failures_redrives_a_batch_after_a_data_fix(own_stack: OwnStack, tmp_path: Path) -> None:
    stack, container, checker = own_stack.stack, own_stack.container, own_stack.checker
    own_stack.add_runners()
    a, b, c = own_stack.users(3)
    container.follow_service.follow(b, a)
    container.follow_service.follow(c, a)
    stack.drain()

    # Given a follower edge damaged behind the API's back (its created_at removed with boto3;
    # the followers table has no stream), every push of a's posts fails on reading it
    dynamodb = client("dynamodb", stack.endpoints)
    edge = {"followee_id": {"S": a}, "follower_id": {"S": c}}
    followers_table = stack.table_name("FollowersTable")
    followed_at = dynamodb.get_item(TableName=followers_table, Key=edge)["Item"]["created_at"]
    dynamodb.update_item(TableName=followers_table, Key=edge, UpdateExpression="REMOVE created_at")
    post = container.post_service.create(a, "cannot be pushed").post_id
    stack.drain()
    [message] = own_stack.failure_messages()
    assert json.loads(message["Body"])["DDBStreamBatchInfo"]["batchSize"] == 1
    assert post not in {e.post_id for e in container.feed.page(b, 10)}

    # When the row is repaired and an operator runs `replay-failures` against the stack
    dynamodb.update_item(
        TableName=followers_table,
        Key=edge,
        UpdateExpression="SET created_at = :t",
        ExpressionAttributeValues={":t": followed_at},
    )
    replay = run_cli("replay-failures", stack, own_stack.redis.url, tmp_path)

    # Then the real handler re-drives the batch, the message is deleted, feeds converge
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "1 replayed, 0 kept" in replay.stdout
    assert own_stack.failure_messages() == []
    stack.drain()
    for user in (a, b, c):
        container.feed_reader.home(user, 20)
    report = checker.check([a, b, c])
    assert report.ok, report.summary()
    assert post in {e.post_id for e in container.feed.page(c, 10)}


def run_cli(
    command: str, stack: LocalStack, redis_url: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``python -m ripple_local COMMAND`` against the stack, as an operator would run it."""
    argv = [
        sys.executable, "-m", "ripple_local", command,
        "--emulator-url", stack.endpoints.default,
        "--dynamodb-url", stack.endpoints.dynamodb,
        "--redis-url", redis_url,
        "--stack-name", stack.stack_name,
        "--state-dir", str(tmp_path / "cli-state"),
        "--log-level", "WARNING",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers/ripple"), str(ROOT / "infra/local")]),
    }
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_dead_redis_fails_a_cache_call_once_without_client_retries() -> None:
    """redis-py's default Retry (10 attempts with backoff) would turn each cache call against a
    dead Redis into seconds; Ripple's client makes exactly one attempt, then falls back."""
    dead = create_redis(Settings(redis_host="127.0.0.1", redis_port=free_port()))
    assert dead.get_retry().get_retries() == 0
    attempts = 0
    original = redis.connection.Connection.connect

    def counting_connect(self: redis.connection.Connection) -> None:
        nonlocal attempts
        attempts += 1
        original(self)

    redis.connection.Connection.connect = counting_connect  # type: ignore[method-assign]
    try:
        with pytest.raises(redis.ConnectionError):
            dead.get("feed:home:nobody")
    finally:
        redis.connection.Connection.connect = original  # type: ignore[method-assign]
    assert attempts == 1
