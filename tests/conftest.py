"""Session-wide real services: one moto server and one redis-server on free ports.

They start once per test session, lazily (only when a test asks for them), so unit tests stay
service-free. Tests share them: use unique names (a uuid in the table / stack name) rather
than resetting state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ripple_local.aws import client
from ripple_local.processes import EmulatorProcess, RedisProcess


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto server (AWS APIs over HTTP) for this session."""
    process = EmulatorProcess.start_on_free_port(state_dir=tmp_path_factory.mktemp("emulator"))
    try:
        yield process.url
    finally:
        process.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """redis:// URL of a throwaway redis-server for this session."""
    process = RedisProcess.start_on_free_port(state_dir=tmp_path_factory.mktemp("redis"))
    try:
        yield process.url
    finally:
        process.stop()


@pytest.fixture(scope="session")
def aws_client(emulator: str) -> Callable[[str], Any]:
    """Build a boto3 client for a service on the session's emulator: ``aws_client("sqs")``."""

    def build(service: str) -> Any:
        return client(service, emulator)

    return build
