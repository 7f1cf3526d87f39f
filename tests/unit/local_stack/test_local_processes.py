"""ManagedProcess.stop ends the whole tree: a service's own children, even in sessions of their
own (LocalStack starts DynamoDB Local and kinesis-local that way), and even when the service
ignores SIGTERM."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ripple_local.processes import ManagedProcess, descendants, process_identity

# A service that starts a grandchild in its own session, then serves a port; with "stubborn"
# it ignores SIGTERM too.
SERVICE = """
import signal, socket, subprocess, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
while True:
    time.sleep(1)
"""


class Service(ManagedProcess):
    name = "tree"
    stop_grace_s = 1.0

    def __init__(self, state_dir: Path, mode: str) -> None:
        super().__init__("127.0.0.1", 0, state_dir)
        self.mode = mode

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def command(self) -> Sequence[str]:
        return [sys.executable, "-c", SERVICE, str(self.port), self.mode]

    def ready(self) -> bool:
        return bool(self.pid is not None and descendants(self.pid)) and _listening(self.port)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _gone(identities: list[tuple[int, str]], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if all(process_identity(pid) != (pid, started) for pid, started in identities):
            return True
        time.sleep(0.05)
    return False


def test_stop_kills_children_in_their_own_sessions(tmp_path: Path) -> None:
    service = Service(tmp_path, "polite").start_on_any_free_port()
    assert service.pid is not None
    tree = descendants(service.pid)
    assert len(tree) == 1 and os.getsid(tree[0][0]) != os.getsid(service.pid)
    service.stop()
    assert _gone(tree)


def test_stop_kills_a_service_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    service = Service(tmp_path, "stubborn").start_on_any_free_port()
    assert service.pid is not None
    pid = service.pid
    tree = [*descendants(pid), (pid, process_identity(pid)[1])]  # type: ignore[index]
    started = time.monotonic()
    service.stop()
    assert _gone(tree)
    assert time.monotonic() - started < 5  # the grace period, then SIGKILL
