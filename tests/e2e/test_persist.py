"""``up --persist``: DynamoDB Local keeps its data in the state directory between runs, and the
JWT signing key is kept with it, so a restarted stack still knows its users, their posts and
the tokens it issued. Without ``--persist`` everything starts empty."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ripple_local.processes import free_port
from tests.e2e.client import Api

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def run_up(state_dir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Api]:
    api_port = free_port()
    command = [
        sys.executable, "-m", "ripple_local", "up", *extra,
        "--state-dir", str(state_dir),
        "--api-port", str(api_port),
        "--emulator-port", str(free_port()),
        "--dynamodb-port", str(free_port()),
        "--redis-port", str(free_port()),
        "--no-metrics",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers/ripple"), str(ROOT / "infra/local")])
    env["PASSWORD_SCRYPT_N"] = str(2**12)
    log = (state_dir / "up.log").open("ab")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    api = Api(f"http://127.0.0.1:{api_port}")
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, (state_dir / "up.log").read_text()[-3000:]
        try:
            if api.call("GET", "/health/live").status_code == 200:
                return process, api
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, (state_dir / "up.log").read_text()[-3000:]
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


def test_persisted_data_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    # Given a persisted stack with a user and a post
    process, api = run_up(tmp_path, "--persist")
    try:
        user = api.signup("persist")
        post = api.call("POST", "/posts", user["token"], json={"text": "still here?"}).json()
    finally:
        stop(process)
    assert (tmp_path / "dynamodb").is_dir()

    # When it is started again on the same state directory
    process, api = run_up(tmp_path, "--persist")
    try:
        # Then the old token still works, and the post and the account are there
        mine = api.call("GET", f"/users/{user['user_id']}/posts", user["token"])
        assert mine.status_code == 200, mine.text
        assert [p["post_id"] for p in mine.json()["items"]] == [post["post_id"]]
        login = api.call(
            "POST", "/auth/login", json={"username": user["username"], "password": "correct horse 1"}
        )
        assert login.status_code == 200, login.text
    finally:
        stop(process)

    # And without --persist the same state directory starts empty
    process, api = run_up(tmp_path)
    try:
        login = api.call(
            "POST", "/auth/login", json={"username": user["username"], "password": "correct horse 1"}
        )
        assert (login.status_code, login.json()["error"]["code"]) == (401, "invalid_credentials")
    finally:
        stop(process)
