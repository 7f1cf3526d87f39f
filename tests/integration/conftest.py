"""Integration fixtures: template.yaml's resources on the session's real emulator, the
functions' environment applied, and one (unstarted) stream runner per template stream
event, drained explicitly by the tests so that every step is deterministic."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ripple.container import Container, get_container
from ripple_local.aws import Endpoints
from ripple_local.esm import RetryBackoff
from ripple_local.functions import stream_event_sources
from ripple_local.lambda_context import LambdaContextFactory
from ripple_local.stack import LocalStack, runner_key
from tests.integration.proxied import h, harness  # noqa: F401 - fixtures of the proxied API
from tests.integration.support import (
    TEST_FANOUT_PAGE_SIZE,
    TEST_FEED_CACHE_MAX_ITEMS,
    TEST_HIGH_FOLLOWER_THRESHOLD,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack(
    emulator: Endpoints, redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    local = LocalStack(
        ROOT,
        endpoints=emulator,
        redis_url=redis_server,
        state_dir=tmp_path_factory.mktemp("state"),
        with_api=False,
        with_runners=False,
        retry_backoff=RetryBackoff(initial_s=0.01, maximum_s=0.05),
    ).prepare()
    os.environ["FEED_CACHE_MAX_ITEMS"] = str(TEST_FEED_CACHE_MAX_ITEMS)
    os.environ["PASSWORD_SCRYPT_N"] = str(2**12)
    os.environ["RATE_LIMIT_WRITES_PER_MINUTE"] = "40"  # high enough for the tests, low enough to hit
    os.environ["FANOUT_PAGE_SIZE"] = str(TEST_FANOUT_PAGE_SIZE)
    os.environ["HIGH_FOLLOWER_THRESHOLD"] = str(TEST_HIGH_FOLLOWER_THRESHOLD)
    # No grace: a marked author's posts are pulled at once (the grace has its own test).
    os.environ["HIGH_FOLLOWER_PULL_GRACE_SECONDS"] = "0"
    for source in stream_event_sources(local.template):
        local.runners[runner_key(source.function_id, source.event_name)] = local.make_runner(source)
    yield local
    local.stop()


@pytest.fixture(scope="session")
def container(stack: LocalStack) -> Container:
    """The same composition root the functions use (built from the stack's environment), its
    models bound for the session (the models are process-wide; tests restore this binding)."""
    container = get_container()
    container.bind_models()
    return container


def _invoker(stack: LocalStack, function_id: str) -> Callable[[dict[str, Any]], Any]:
    """Call a function's real handler as Lambda would: the event plus a fresh context."""
    handler = stack.handler(function_id)
    contexts = LambdaContextFactory.from_template(stack.template, function_id, stack.stack_name)
    return lambda event: handler(event, contexts())


@pytest.fixture(scope="session")
def fanout_handler(stack: LocalStack) -> Callable[[dict[str, Any]], Any]:
    return _invoker(stack, "FanoutFunction")


@pytest.fixture(scope="session")
def cache_refresher_handler(stack: LocalStack) -> Callable[[dict[str, Any]], Any]:
    return _invoker(stack, "CacheRefresherFunction")
