"""Stream runners in a process per function (``LocalStack(runners="processes")``, ``up``'s
default), on the session's emulator and Redis: the real functions run apart from this
process and from each other, their work, stats, checkpoints and metrics are visible here as
with in-process runners, a runner process that dies is started again, one that keeps dying
or cannot start stops the stack loudly, and none outlives the stack."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ripple.ids import new_ulid
from ripple_local import runner_processes
from ripple_local.aws import Endpoints, client
from ripple_local.esm import RetryBackoff
from ripple_local.stack import RUNNERS_PROCESSES, LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def new_stack(emulator: Endpoints, redis_server: str, state_dir: Path, root: Path = ROOT) -> LocalStack:
    return LocalStack(
        root,
        endpoints=emulator,
        redis_url=redis_server,
        state_dir=state_dir,
        stack_name=f"rp-{uuid.uuid4().hex[:8]}",
        with_api=False,
        with_runners=False,
        retry_backoff=RetryBackoff(0.01, 2.0, 0.05),
        environ={},  # the functions' environment goes to the runner processes, not this one
        metrics_port=0,
        runners=RUNNERS_PROCESSES,
    )


@pytest.fixture
def stack(emulator: Endpoints, redis_server: str, tmp_path: Path) -> Iterator[LocalStack]:
    local = new_stack(emulator, redis_server, tmp_path).prepare()
    try:
        local.start_metrics()
        local.start_runners()
        yield local
    finally:
        local.stop()


def put_post(stack: LocalStack, author: str) -> str:
    now = int(time.time() * 1000)
    post_id = new_ulid(now)
    item = {
        "author_id": {"S": author},
        "post_id": {"S": post_id},
        "text": {"S": "hello"},
        "created_at": {"N": str(now)},
        "like_count": {"N": "0"},
    }
    client("dynamodb", stack.endpoints).put_item(TableName=stack.table_name("PostsTable"), Item=item)
    return post_id


def feed_post_ids(stack: LocalStack, reader: str) -> set[str]:
    page = client("dynamodb", stack.endpoints).query(
        TableName=stack.table_name("FeedTable"),
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": reader}},
        ConsistentRead=True,
    )
    return {item["post_id"]["S"] for item in page["Items"]}


def metric(stack: LocalStack, name: str, **labels: str) -> float:
    assert stack.metrics is not None
    text = urllib.request.urlopen(stack.metrics.url, timeout=10).read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def eventually(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_each_functions_runners_run_in_a_process_of_their_own(stack: LocalStack) -> None:
    # Given the stack's runners, a process per function with stream events
    processes = {p.function_id: p for p in stack.runner_processes}
    assert set(processes) == {"FanoutFunction", "CacheRefresherFunction"}
    pids = {p.pid for p in processes.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(psutil.Process(pid).ppid() == os.getpid() for pid in pids if pid)
    assert set(stack.runners) == {
        "FanoutFunction.PostsStream",
        "FanoutFunction.JobsStream",
        "FanoutFunction.FollowsStream",
        "FanoutFunction.RepostsStream",
        "FanoutFunction.LikesStream",
        "CacheRefresherFunction.PostsStream",
        "CacheRefresherFunction.FeedStream",
        "CacheRefresherFunction.LikesStream",
        "CacheRefresherFunction.UsersStream",
    }
    assert stack.runner("FanoutFunction", "PostsStream").config.parallelization_factor == 4

    # When a post is written and the stack drained (through the processes)
    post_id = put_post(stack, "author-1")
    stack.drain()

    # Then the real fan-out, in its process, wrote the author's feed item
    assert post_id in feed_post_ids(stack, "author-1")
    # ... the mappings' stats and the runner metrics are visible here
    assert eventually(lambda: stack.runner("FanoutFunction", "PostsStream").stats.records_ok >= 1)
    assert stack.runner("CacheRefresherFunction", "FeedStream").stats.records_ok >= 1
    delivered = "ripple_stream_records_delivered_total"
    assert metric(stack, delivered, function="FanoutFunction", event_source="PostsStream") >= 1
    # ... the functions' own EMF metrics reached the exporter, under each function's service name
    assert eventually(lambda: metric(stack, "ripple_stream_batches_total", service="ripple-fanout") >= 1)
    assert eventually(
        lambda: metric(stack, "ripple_stream_batches_total", service="ripple-cache-refresher") >= 1
    )
    # ... and both processes' checkpoints are in the one checkpoint file
    assert stack.checkpoints is None  # this process ran no runner
    from ripple_local.checkpoints import CheckpointStore

    mappings = CheckpointStore(stack.state_dir).snapshot()
    functions = {mapping_id.split("|")[0].rsplit("-", 1)[-1] for mapping_id in mappings}
    assert functions == {"FanoutFunction", "CacheRefresherFunction"}
    # ... and the runner processes are recorded for a later `up` to reclaim
    recorded = (stack.state_dir / "services.json").read_text()
    assert all(f'"pid": {pid}' in recorded for pid in pids)


def test_a_runner_process_that_dies_is_started_again_and_resumes(stack: LocalStack) -> None:
    fanout = next(p for p in stack.runner_processes if p.function_id == "FanoutFunction")
    first_pid = fanout.pid
    assert first_pid is not None
    # When the fan-out process is killed outright
    os.kill(first_pid, signal.SIGKILL)
    # Then a new one takes over, and posts written meanwhile are fanned out
    post_id = put_post(stack, "author-2")
    assert eventually(lambda: fanout.running and fanout.pid != first_pid)
    assert fanout.restarts == 1 and stack.failure is None
    stack.drain()
    assert post_id in feed_post_ids(stack, "author-2")


def test_stopping_the_stack_ends_every_runner_process(
    emulator: Endpoints, redis_server: str, tmp_path: Path
) -> None:
    stack = new_stack(emulator, redis_server, tmp_path).prepare()
    try:
        stack.start_runners()
        children = [psutil.Process(p.pid) for p in stack.runner_processes if p.pid]
        assert len(children) == 2
    finally:
        stack.stop()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [] and stack.runner_processes == [] and stack.runners == {}


def overlay_root(tmp_path: Path, fanout_app: str) -> Path:
    """The repository with another functions/fanout/app.py."""
    root = tmp_path / "root"
    (root / "functions" / "fanout").mkdir(parents=True)
    for name in ("template.yaml", "samconfig.toml", "layers"):
        (root / name).symlink_to(ROOT / name)
    for function in ("api", "cache_refresher"):
        (root / "functions" / function).symlink_to(ROOT / "functions" / function)
    (root / "functions" / "fanout" / "app.py").write_text(fanout_app)
    return root


def test_a_runner_process_that_cannot_start_fails_the_start_with_its_error(
    emulator: Endpoints, redis_server: str, tmp_path: Path
) -> None:
    root = overlay_root(tmp_path, "raise RuntimeError('fan-out is broken at import')\n")
    stack = new_stack(emulator, redis_server, tmp_path / "state", root).prepare()
    try:
        with pytest.raises(RuntimeError, match="runners-FanoutFunction did not start"):
            stack.start_runners()
        assert "fan-out is broken at import" in caplog_text(stack)
    finally:
        stack.stop()


def caplog_text(stack: LocalStack) -> str:
    process = next(p for p in stack.runner_processes if p.function_id == "FanoutFunction")
    return str(process.failure) + process.output_tail()


def test_a_runner_process_that_keeps_dying_stops_the_stack_loudly(
    emulator: Endpoints, redis_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fan-out whose process dies on every invocation (the record is redelivered each time)
    monkeypatch.setattr(runner_processes, "RESTART_DELAY_S", 0.1)
    root = overlay_root(tmp_path, "import os\n\ndef handler(event, context):\n    os._exit(3)\n")
    stack = new_stack(emulator, redis_server, tmp_path / "state", root).prepare()
    try:
        stack.start_runners()
        # When a post arrives
        put_post(stack, "author-3")
        # Then the process is started again MAX_RESTARTS times, then left down, and the stack says so
        failure = eventually(lambda: stack.failure, timeout=60)
        assert failure and "FanoutFunction" in failure and "status 3" in failure, failure
        fanout = next(p for p in stack.runner_processes if p.function_id == "FanoutFunction")
        assert fanout.restarts == runner_processes.MAX_RESTARTS and not fanout.running
        with pytest.raises(RuntimeError, match="not running"):
            stack.runner("FanoutFunction", "PostsStream").drain()
    finally:
        stack.stop()
