"""End-to-end fixtures: the whole local stack (`python -m ripple_local up`) as a real
subprocess on free ports, started once per session and driven over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ripple_local.aws import Endpoints
from ripple_local.emulators import DYNAMODB_LOCAL
from tests.e2e.client import MEASUREMENTS, Api

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def stack(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    state = tmp_path_factory.mktemp("stack")
    api_port, emulator_port, redis_port = _free_port(), _free_port(), _free_port()
    dynamodb_port = _free_port()
    cmd = [
        sys.executable, "-m", "ripple_local", "up",
        "--emulator", backend,
        "--api-port", str(api_port),
        "--emulator-port", str(emulator_port),
        "--dynamodb-port", str(dynamodb_port),
        "--redis-port", str(redis_port),
        "--state-dir", str(state),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers/ripple"), str(ROOT / "infra/local")]),
    }
    log = (state / "stack.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    api = Api(f"http://127.0.0.1:{api_port}")
    # Where the stack's services listen, for tools run against it (`python -m ripple_local ...`).
    dynamodb_url = f"http://127.0.0.1:{dynamodb_port}" if backend == DYNAMODB_LOCAL else None
    api.endpoints = Endpoints.of(f"http://127.0.0.1:{emulator_port}", dynamodb_url)
    api.redis_url = f"redis://127.0.0.1:{redis_port}"
    api.state_dir = state
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"local stack exited early:\n{(state / 'stack.log').read_text()[-4000:]}")
        try:
            if api.call("GET", "/health/live").status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"local stack did not come up:\n{(state / 'stack.log').read_text()[-4000:]}")
        time.sleep(0.2)
    yield api
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    path = os.environ.get("RIPPLE_MEASUREMENTS_FILE")
    lines = Path(path).read_text().splitlines() if path and Path(path).exists() else list(MEASUREMENTS)
    if lines:
        terminalreporter.section("end-to-end measurements")
        for line in lines:
            terminalreporter.write_line(line)
