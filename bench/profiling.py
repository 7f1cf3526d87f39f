"""Sampling profiles of the running stack's Python processes (and moto's) with py-spy.

py-spy attaches by pid from outside (non-blocking: the target is never paused) and writes
collapsed stacks; each sample is attributed to the innermost frame that belongs to a known
component, so "a socket read inside botocore" counts as "waiting on the emulator".
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# (marker in the frame's file path, component); the innermost match on a stack wins.
STACK_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("ripple_local/esm.py", "stream runner (polling, batching)"),
    ("ripple_local/api_server.py", "local HTTP server (Chalice local)"),
    ("chalice/local.py", "local HTTP server (Chalice local)"),
    ("socketserver.py", "local HTTP server (Chalice local)"),
    ("http/server.py", "local HTTP server (Chalice local)"),
    ("chalice/app.py", "Chalice app (routing, middleware)"),
    ("ripple/", "Ripple code"),
    ("functions/", "Ripple code"),
    ("aws_lambda_powertools/", "Powertools (logger, metrics, batch)"),
    ("ripple/metrics_bridge.py", "metrics forwarding (EMF copy to the local exporter)"),
    ("urllib/request.py", "metrics forwarding (EMF copy to the local exporter)"),
    ("jwt/", "JWT"),
    ("pynamodb/", "PynamoDB (models, serialization)"),
    ("redis/", "Redis client"),
    ("botocore/", "botocore (requests to the emulator)"),
    ("boto3/", "botocore (requests to the emulator)"),
    ("urllib3/", "botocore (requests to the emulator)"),
    ("logging/__init__.py", "logging"),
)
MOTO_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("werkzeug/", "werkzeug (HTTP server)"),
    ("socketserver.py", "werkzeug (HTTP server)"),
    ("http/server.py", "werkzeug (HTTP server)"),
    ("moto/core/", "moto core (routing, request parsing)"),
    ("moto/backends.py", "moto core (routing, request parsing)"),
    ("botocore/", "moto core (routing, request parsing)"),
    ("moto/dynamodb/responses.py", "DynamoDB API handlers"),
    ("moto/dynamodb/models/", "DynamoDB data model (items, indexes, stream records)"),
    ("moto/dynamodb/parsing/", "DynamoDB expression parsing"),
    ("moto/dynamodbstreams/", "DynamoDB Streams API"),
    ("json/", "JSON encode/decode"),
    ("moto/utilities/", "moto utilities"),
    ("logging/__init__.py", "request logging (werkzeug access log to the log file)"),
)


def py_spy() -> str | None:
    """The py-spy executable (this virtualenv's first), or None."""
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.is_file() else shutil.which("py-spy")


class Recording:
    """py-spy recording a pid for a fixed duration in the background."""

    def __init__(self, pid: int, duration_s: float, out: Path, rate: int = 67) -> None:
        self.out = out
        self.process: subprocess.Popen[bytes] | None = None
        exe = py_spy()
        if exe is None:
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s))),
             "--rate", str(rate),
             "--format", "raw", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def wait(self, timeout_s: float = 60.0) -> bool:
        """True when the collapsed stacks were written."""
        if self.process is None:
            return False
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5.0)
        return self.out.is_file() and self.out.stat().st_size > 0


IDLE = "idle threads (select, condition waits, sleeps)"
_IDLE_LEAVES = ("selectors.py", "Condition.wait", "Event.wait", "sleep (", "accept (socket.py", "Thread.join")
_READ = "SocketIO.readinto"  # a blocking socket read: py-spy samples it like running code
WAITING = "waiting on the emulator (botocore socket reads)"


def summarize(path: Path, components: tuple[tuple[str, str], ...], top: int = 8) -> dict[str, Any]:
    """Shares of busy samples by component (idle threads reported apart), and the hottest
    leaf functions."""
    shares: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        # A keep-alive connection's thread waiting for the next request is idle too.
        if any(marker in frames[-1] for marker in _IDLE_LEAVES) or (
            _READ in frames[-1] and "handle_one_request" in frames[-2]
        ):
            idle += count
            continue
        component = "other (interpreter, stdlib, threads)"
        for frame in frames:  # outermost first: later (inner) matches override
            for marker, name in components:
                if marker in frame:
                    component = name
        if _READ in frames[-1] and component.startswith("botocore"):
            component = WAITING  # the time the emulator (any engine, a JVM too) took to answer
        shares[component] += count
        leaves[frames[-1].strip()] += count
    busy = total - idle
    return {
        "samples": total,
        "idle_share": idle / total if total else 0.0,
        "shares": {k: v / busy for k, v in shares.most_common()} if busy else {},
        "hottest": [(k, v / busy) for k, v in leaves.most_common(top)] if busy else [],
        "path": str(path),
    }


def profile_pids(pids: dict[str, int], duration_s: float, out_dir: Path, label: str) -> list[Recording]:
    """Start py-spy on the stack and the emulator; summarize with :func:`finish`."""
    return [Recording(pid, duration_s, out_dir / f"{label}-{name}.txt") for name, pid in pids.items()]


def finish(recordings: list[Recording], names: list[str]) -> dict[str, Any]:
    """Wait for the recordings started by :func:`profile_pids` and summarize each."""
    result: dict[str, Any] = {}
    for name, recording in zip(names, recordings, strict=True):
        if recording.wait():
            components = MOTO_COMPONENTS if name == "moto" else STACK_COMPONENTS
            result[name] = summarize(recording.out, components)
    return result
