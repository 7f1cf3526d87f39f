"""Run a command so that nothing it starts outlives this process (Linux).

``python -m ripple_local.reaper -- COMMAND [ARG ...]``

A service the stack starts dies with the stack (``processes._die_with_parent``), but what
that service starts in sessions of its own does not: LocalStack's DynamoDB Local and
kinesis-local, re-parented to init when LocalStack is killed, kept their ports. Between the
stack and such a service, this process

* becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``): the service's orphans are
  re-parented to it, not to init, so it can always find them;
* asks for SIGTERM when its own parent dies (``PR_SET_PDEATHSIG``; the stack's SIGKILL is
  then its SIGTERM);
* on SIGTERM or SIGINT, or when COMMAND exits, stops every descendant (SIGTERM, then SIGKILL
  after ``GRACE_S``) and exits with COMMAND's status.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading

from ripple_local.processes import descendants, kill_all

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # linux/prctl.h
GRACE_S = 5.0  # LocalStack's own shutdown takes a few seconds


def stop_descendants(grace_s: float = GRACE_S) -> None:
    """SIGTERM to every descendant of this process, SIGKILL to those left after ``grace_s``."""
    for _ in range(3):  # a process may start another while the first ones are stopping
        found = descendants(os.getpid())
        if not found:
            return
        kill_all(found, grace_s)


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("usage: python -m ripple_local.reaper -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    if os.getppid() == 1:  # the parent died before PR_SET_PDEATHSIG took effect
        return 1
    child = subprocess.Popen(command)
    while child.poll() is None and not stopping.wait(0.2):
        pass
    stop_descendants()
    return child.wait() if child.poll() is None else child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
