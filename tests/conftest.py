"""Session-wide real services: the AWS emulators of the chosen backend and one redis-server,
on free ports.

They start once per test session, lazily (only when a test asks for them), so unit tests stay
service-free. Tests share them: use unique names (a uuid in the table / stack name) rather
than resetting state.

The backend is ``--backend`` (or ``RIPPLE_TEST_BACKEND``): ``dynamodb-local`` (the default:
DynamoDB Local for DynamoDB and Streams, moto for SQS and Secrets Manager), ``moto`` or
``localstack``. ``make test`` runs everything on the default and the ``contract`` subset on
the other two (README "Emulators").
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ripple_local.aws import Endpoints, client
from ripple_local.emulators import DEFAULT_EMULATOR, EMULATORS, start_emulators
from ripple_local.processes import RedisProcess

BACKEND_VARIABLE = "RIPPLE_TEST_BACKEND"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=EMULATORS,
        default=os.environ.get(BACKEND_VARIABLE) or DEFAULT_EMULATOR,
        help=f"emulators the integration tests use (default: ${BACKEND_VARIABLE} or {DEFAULT_EMULATOR})",
    )


def pytest_configure(config: pytest.Config) -> None:
    """In the controlling process (not a pytest-xdist worker): a file the e2e tests append their
    measurements to, inherited by the workers through the environment."""
    if not hasattr(config, "workerinput") and "RIPPLE_MEASUREMENTS_FILE" not in os.environ:
        handle, path = tempfile.mkstemp(prefix="ripple-measurements-", suffix=".txt")
        os.close(handle)
        os.environ["RIPPLE_MEASUREMENTS_FILE"] = path


def pytest_report_header(config: pytest.Config) -> str:
    return f"ripple backend: {config.getoption('--backend')}"


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The emulator kind this session runs on (``dynamodb-local``, ``moto``, ``localstack``)."""
    return str(request.config.getoption("--backend"))


@pytest.fixture(scope="session")
def emulator(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """Where each AWS API is served for this session (started on free ports)."""
    running = start_emulators(backend, tmp_path_factory.mktemp("emulator"))
    try:
        yield running.endpoints
    finally:
        running.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """redis:// URL of a throwaway redis-server for this session."""
    process = RedisProcess.start_on_free_port(state_dir=tmp_path_factory.mktemp("redis"))
    try:
        yield process.url
    finally:
        process.stop()


@pytest.fixture(scope="session")
def aws_client(emulator: Endpoints) -> Callable[[str], Any]:
    """Build a boto3 client for a service on the session's emulators: ``aws_client("sqs")``."""

    def build(service: str) -> Any:
        return client(service, emulator)

    return build
