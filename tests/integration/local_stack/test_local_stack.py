"""The assembled local stack on the session's emulator and Redis: resources, environment,
template-driven stream runners, the API server and the CLI's create-resources."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from chalice import Chalice

from ripple_local.api_server import ApiServer
from ripple_local.aws import Endpoints, client
from ripple_local.esm import RetryBackoff
from ripple_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator

ROOT = Path(__file__).resolve().parents[3]


def test_prepared_stack_runs_template_streams_end_to_end(
    emulator: Endpoints, redis_server: str, tmp_path: Path
) -> None:
    # Given a prepared stack (no API, runners added with fake handlers) and a shell environment
    stack_name = f"stk-{uuid.uuid4().hex[:8]}"
    environ = {"AWS_ACCESS_KEY_ID": "from-the-shell"}
    stack = LocalStack(
        ROOT,
        endpoints=emulator,
        redis_url=redis_server,
        state_dir=tmp_path,
        stack_name=stack_name,
        with_api=False,
        with_runners=False,
        retry_backoff=RetryBackoff(0.001, 2.0, 0.01),
        environ=environ,
    )
    stack.prepare()
    try:
        # Then the functions' environment points at the local resources
        redis_port = redis_server.rsplit(":", 1)[1].split("/")[0]
        assert environ["POSTS_TABLE"] == f"{stack_name}-PostsTable"
        assert environ["REDIS_HOST"] == "127.0.0.1" and environ["REDIS_PORT"] == redis_port
        assert environ["REDIS_TLS"] == "false" and environ["STAGE"] == "local"
        assert environ["AWS_ENDPOINT_URL"] == emulator.default and environ["AWS_ACCESS_KEY_ID"] == "testing"
        assert environ["AWS_ENDPOINT_URL_DYNAMODB"] == environ["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"]
        assert environ["AWS_ENDPOINT_URL_DYNAMODB"] == emulator.dynamodb
        assert (
            environ["AWS_ENDPOINT_URL_SQS"] == environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == emulator.default
        )
        assert environ["POWERTOOLS_SERVICE_NAME"] == "ripple-local"

        # When a fake fan-out copies each post into the feed table, and a fake refresher records
        dynamodb = client("dynamodb", emulator)
        refreshed: list[str] = []

        def fanout(event: dict[str, Any], context: Any) -> dict[str, Any]:
            for record in event["Records"]:
                post = record["dynamodb"]["NewImage"]
                item = {"user_id": {"S": "reader"}, "post_id": post["post_id"]}
                dynamodb.put_item(TableName=stack.table_name("FeedTable"), Item=item)
            return {"batchItemFailures": []}

        def refresher(event: dict[str, Any], context: Any) -> None:
            refreshed.extend(
                r["dynamodb"]["Keys"]["post_id"]["S"]
                for r in event["Records"]
                if "FeedTable" in r["eventSourceARN"]
            )

        stack.start_runners(handlers={"FanoutFunction": fanout, "CacheRefresherFunction": refresher})
        for post_id in ("p1", "p2", "p3"):
            item = {"author_id": {"S": "author"}, "post_id": {"S": post_id}}
            dynamodb.put_item(TableName=stack.table_name("PostsTable"), Item=item)
        stack.drain()

        # Then records flowed posts stream -> fan-out -> feed stream -> refresher. Each arrived
        # once; across items there is no order to expect (FanoutParallelizationFactor runs
        # several batches of a shard at once, ordered per item: unit/local_stack/test_local_esm_parallel.py)
        assert sorted(refreshed) == ["p1", "p2", "p3"]
        posts_runner = stack.runner("FanoutFunction", "PostsStream")
        assert posts_runner.config.batch_size == 50 and posts_runner.config.maximum_retry_attempts == 3
        assert stack.resources is not None
        assert posts_runner.failure_queue_url == stack.resources.queue_urls()["StreamFailureQueue"]
        assert stack.runner("CacheRefresherFunction", "FeedStream").config.maximum_retry_attempts == 5
        assert f"{stack_name}-FeedTable" in stack.describe_resources()
    finally:
        stack.stop()
    # And stop() gives the shell its environment back
    assert environ == {"AWS_ACCESS_KEY_ID": "from-the-shell"}
    assert stack.runners == {}


def test_api_server_serves_a_chalice_app_over_http() -> None:
    app = Chalice(app_name="probe")

    @app.route("/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    for _ in range(2):  # a second server for the same app object works too
        with ApiServer(app, port=0) as server, urllib.request.urlopen(f"{server.url}/health/live") as reply:
            assert reply.status == 200
            assert reply.read() == b'{"status":"ok"}'
        assert not server.running


def test_cli_create_resources(emulator: Endpoints) -> None:
    stack_name = f"cli-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers/ripple"), str(ROOT / "infra/local")]),
    }
    command = [
        sys.executable,
        "-m",
        "ripple_local",
        "create-resources",
        "--emulator-url",
        emulator.default,
        "--dynamodb-url",
        emulator.dynamodb,
    ]
    result = subprocess.run(
        [*command, "--root-dir", str(ROOT), "--stack-name", stack_name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{stack_name}-PostsTable" in result.stdout
    tables = client("dynamodb", emulator).list_tables()["TableNames"]
    assert f"{stack_name}-FeedTable" in tables
