"""``make up`` as a person runs it: however it ends, nothing of it is left, the next one starts,
and the terminal stays readable.

Each test runs the README's command, ``make up`` (ports and state directory passed through
``UP_ARGS`` so it never collides with a developer's own stack), in a process group of its own,
and ends it the ways a terminal session ends: the window closes (SIGHUP to the group), a
process manager or ``timeout`` stops it (SIGTERM to the group), it is killed outright
(SIGKILL to the stack's own process, as the out-of-memory killer does).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from ripple_local.processes import ProcessRecord, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 120.0


@dataclass
class MakeUp:
    """One ``make up`` in its own process group, with its ports and state directory."""

    state_dir: Path
    extra: tuple[str, ...] = ()
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        for name in ("api", "emulator", "dynamodb", "redis", "metrics"):
            self.ports.setdefault(name, free_port())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        runs = len(list(self.state_dir.glob("terminal-*.txt")))
        self.output = self.state_dir / f"terminal-{runs}.txt"  # one per start: what this run showed

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def start(self, wait: bool = True) -> MakeUp:
        args = " ".join(
            [
                f"--api-port {self.ports['api']}",
                f"--emulator-port {self.ports['emulator']}",
                f"--dynamodb-port {self.ports['dynamodb']}",
                f"--redis-port {self.ports['redis']}",
                f"--metrics-port {self.ports['metrics']}",
                f"--state-dir {self.state_dir}",
                *self.extra,
            ]
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAKE"))}
        with self.output.open("ab") as terminal:
            self.process = subprocess.Popen(
                ["make", "--no-print-directory", "up", f"UP_ARGS={args}"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=terminal,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own, like a terminal's job
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_DEADLINE_S
        while "Press Ctrl-C" not in self.terminal():
            assert self.process.poll() is None, self.terminal()[-3000:]
            assert time.monotonic() < deadline, self.terminal()[-3000:]
            time.sleep(0.2)

    def terminal(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def stack_pid(self) -> int:
        return int(json.loads((self.state_dir / "stack.json").read_text())["pid"])

    def recorded(self) -> list[ProcessRecord]:
        """Every process this stack started, as it recorded them (services and their children)."""
        entries = json.loads((self.state_dir / "services.json").read_text())
        return [ProcessRecord.from_json(entry) for entry in entries]

    def signal_group(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal_group(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"


def _none_left(records: list[ProcessRecord], within_s: float = 20.0) -> list[ProcessRecord]:
    deadline = time.monotonic() + within_s
    while True:
        left = [record for record in records if record.live() is not None]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _works(base: str) -> None:
    signup = requests.post(
        f"{base}/auth/signup",
        json={"username": f"lc_{os.urandom(4).hex()}", "password": "correct horse"},
        timeout=30,
    )
    assert signup.status_code == 201, signup.text
    token = signup.json()["access_token"]
    post = requests.post(
        f"{base}/posts", json={"text": "still here"}, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert post.status_code == 201, post.text


def start_again(first: MakeUp, records: list[ProcessRecord]) -> MakeUp:
    """The next ``make up`` on the stopped stack's ports and state directory. Its ports were
    free the moment it stopped, so on this shared machine another test's emulator may take
    one first: a port held by a process the first stack never started is the machine's, not
    a leftover, and that start is retried on fresh ports. A leftover of the first stack
    holding a port still fails the test (``_none_left`` has already checked there is none)."""
    ours = {r.pid for r in records}  # what the first stack started (first.recorded())
    second = MakeUp(first.state_dir, ports=dict(first.ports)).start(wait=False)
    try:
        second.wait_ready()
        return second
    except AssertionError:
        held = re.search(r"already in use by .* \(pid (\d+)\)", second.terminal())
        if held is None or int(held.group(1)) in ours:
            raise
    second.stop()
    return MakeUp(first.state_dir).start()


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["terminal-closed", "terminated"])
def test_a_signal_to_the_whole_group_stops_everything_and_the_next_start_works(
    state_dir: Path, signum: int
) -> None:
    # Given a running `make up`
    first = MakeUp(state_dir).start()
    try:
        records = first.recorded()
        assert {r.name for r in records} >= {"dynamodb-local", "moto", "redis"}

        # When its whole process group gets the signal
        first.signal_group(signum)
        first.wait_exit()

        # Then nothing it started is left
        assert _none_left(records) == []
        # And the next `make up` on the same ports and state directory works
        second = start_again(first, records)
        try:
            _works(second.api)
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_killed_stack_leaves_nothing_and_the_next_start_works(state_dir: Path) -> None:
    first = MakeUp(state_dir).start()
    try:
        records = first.recorded()
        # When the stack's own process is killed outright (no handler runs)
        os.kill(first.stack_pid(), signal.SIGKILL)
        first.wait_exit()
        # Then its services die with it (parent-death signal), and the next start works
        assert _none_left(records) == []
        second = start_again(first, records)
        try:
            _works(second.api)
        finally:
            second.stop()
    finally:
        first.stop()


def test_leftovers_of_a_killed_stack_are_reclaimed_only_if_they_are_its_own(
    state_dir: Path, tmp_path: Path
) -> None:
    # Given the record of an earlier stack: one of its processes is still running (a grandchild
    # that a parent-death signal does not reach), another entry names a pid that is now
    # something else (same pid, other command line), and a third is long gone
    state_dir.mkdir(parents=True)
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(601)"], start_new_session=True
    )
    try:
        mine = ProcessRecord.of("kinesis-local", psutil.Process(leftover.pid))
        other = ProcessRecord.of("moto", psutil.Process(bystander.pid))
        stale = ProcessRecord(other.name, other.pid, other.create_time, ("python", "-m", "moto.server"))
        gone = ProcessRecord("redis", 999_999, 1.0, ("redis-server",))
        (state_dir / "services.json").write_text(json.dumps([r.to_json() for r in (mine, stale, gone)]))

        # When a new stack starts on that state directory
        stack = MakeUp(state_dir).start()
        try:
            # Then it reclaimed its own leftover, and left the other program alone
            assert leftover.wait(20) is not None
            assert bystander.poll() is None
            assert "reclaiming kinesis-local" in (state_dir / "logs" / "stack.log").read_text()
        finally:
            stack.stop()
    finally:
        for process in (leftover, bystander):
            process.kill()
            process.wait()


def test_a_port_held_by_another_program_is_one_line_and_exit_1(state_dir: Path) -> None:
    """Also with a relative --state-dir (the services run in it, so it is made absolute)."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        up = MakeUp(state_dir, ports={"api": taken})
        result = subprocess.run(
            [sys.executable, "-m", "ripple_local", "up", "--api-port", str(taken),
             "--state-dir", os.path.relpath(state_dir, ROOT), "--emulator-port", str(up.ports["emulator"]),
             "--dynamodb-port", str(up.ports["dynamodb"]), "--redis-port", str(up.ports["redis"]),
             "--no-metrics"],
            cwd=ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    [line] = output.strip().splitlines()  # nothing started, so nothing else to say
    assert str(taken) in line, output
    assert "already in use" in line and "python" in line and f"pid {os.getpid()}" in line, line


def test_the_terminal_shows_the_status_table_and_one_line_per_request(state_dir: Path) -> None:
    up = MakeUp(state_dir).start()
    try:
        requests.get(f"{up.api}/health/live", timeout=10)
        requests.get(f"{up.api}/users/01JDQ0000000000000000ZZZZZ", timeout=10)  # 401, a route template
    finally:
        up.stop()
    shown = up.terminal()  # all of it: a stopped stack has flushed every line it printed
    assert "API" in shown and up.api in shown and str(state_dir) in shown
    assert "DynamoDB + Streams" in shown and "dynamodb-local" in shown
    lines = shown.splitlines()
    assert any(line.split()[:3] == ["GET", "/health/live", "200"] for line in lines), shown
    assert any(line.split()[:3] == ["GET", "/users/{user_id}", "401"] for line in lines), shown
    assert '"_aws"' not in shown and "No application metrics" not in shown  # EMF and warnings: in files
    assert '"_aws"' in (state_dir / "logs" / "functions.log").read_text()


def test_quiet_shows_no_request_lines(state_dir: Path) -> None:
    up = MakeUp(state_dir, extra=("--quiet",)).start()
    try:
        requests.get(f"{up.api}/health/live", timeout=10)
        time.sleep(1.0)
        shown = up.terminal()
    finally:
        up.stop()
    assert "Press Ctrl-C" in shown and "/health/live" not in shown
