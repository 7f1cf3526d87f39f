"""The reaper (``ripple_local.reaper``): what a service starts in sessions of its own ends
with the stack, even when the stack is killed outright (a fresh-clone review found
LocalStack's DynamoDB Local and kinesis-local still listening after a SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

# A "service" that starts a grandchild in a session of its own (as LocalStack starts Java and
# Node), writes the grandchild's pid, and waits.
SERVICE = (
    "import subprocess, sys, time;"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True);"
    "open(sys.argv[1], 'w').write(str(p.pid)); time.sleep(300)"
)
# The stack: starts the reaper around the service (dying with it, as ManagedProcess does) and
# waits to be killed.
STACK = (
    "import ctypes, signal, subprocess, sys, time;"
    "libc = ctypes.CDLL(None);"
    "reaper = [sys.executable, '-m', 'ripple_local.reaper', '--'];"
    "subprocess.Popen(reaper + [sys.executable, '-c', sys.argv[1], sys.argv[2]],"
    " preexec_fn=lambda: libc.prctl(1, signal.SIGKILL));"
    "time.sleep(300)"
)


def _wait_for(path: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the service never started its grandchild")


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_stack_takes_the_services_grandchildren_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    stack = subprocess.Popen([sys.executable, "-c", STACK, SERVICE, str(pid_file)])
    grandchild = _wait_for(pid_file)
    try:
        os.kill(stack.pid, signal.SIGKILL)
        stack.wait()
        assert _gone(grandchild, within_s=15), "the grandchild outlived the killed stack"
    finally:
        if psutil.pid_exists(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_without_the_reaper_the_grandchild_would_survive(tmp_path: Path) -> None:
    """The control: the same service started directly is the leak the reaper closes."""
    pid_file = tmp_path / "grandchild.pid"
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(pid_file)])
    grandchild = _wait_for(pid_file)
    try:
        service.kill()
        service.wait()
        assert not _gone(grandchild, within_s=1)
    finally:
        os.kill(grandchild, signal.SIGKILL)
