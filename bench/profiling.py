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

SERVER = "local HTTP server (Chalice local)"
BOTOCORE = "botocore (requests to the emulator)"
METRICS = "metrics forwarding (EMF copy to the local exporter)"
# (marker in the frame's file path, component); the innermost match on a stack wins.
STACK_COMPONENTS = (
    ("ripple_local/esm.py", "stream runner (polling, batching)"),
    *(
        (m, SERVER)
        for m in ("ripple_local/api_server.py", "chalice/local.py", "socketserver.py", "http/server.py")
    ),
    ("chalice/app.py", "Chalice app (routing, middleware)"),
    ("ripple/", "Ripple code"),
    ("functions/", "Ripple code"),
    ("aws_lambda_powertools/", "Powertools (logger, metrics, batch)"),
    ("ripple_local/metrics_bridge.py", METRICS),
    ("urllib/request.py", METRICS),
    ("jwt/", "JWT"),
    ("pynamodb/", "PynamoDB (models, serialization)"),
    ("redis/", "Redis client"),
    *((m, BOTOCORE) for m in ("botocore/", "boto3/", "urllib3/")),
    ("logging/__init__.py", "logging"),
)
MOTO_CORE, WERKZEUG = "moto core (routing, request parsing)", "werkzeug (HTTP server)"
MOTO_COMPONENTS = (
    *((m, WERKZEUG) for m in ("werkzeug/", "socketserver.py", "http/server.py")),
    *((m, MOTO_CORE) for m in ("moto/core/", "moto/backends.py", "botocore/")),
    ("moto/dynamodb/responses.py", "DynamoDB API handlers"),
    ("moto/dynamodb/models/", "DynamoDB data model (items, indexes, stream records)"),
    ("moto/dynamodb/parsing/", "DynamoDB expression parsing"),
    ("moto/dynamodbstreams/", "DynamoDB Streams API"),
    ("json/", "JSON encode/decode"),
    ("moto/utilities/", "moto utilities"),
    ("logging/__init__.py", "request logging (werkzeug access log to the log file)"),
)
_IDLE_LEAVES = ("selectors.py", "Condition.wait", "Event.wait", "sleep (", "accept (socket.py", "Thread.join")
_READ = "SocketIO.readinto"  # a blocking socket read: py-spy samples it like running code
WAITING = "waiting on the emulator (botocore socket reads)"


def summarize(path: Path, components: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Shares of busy samples by component (idle threads apart)."""
    shares: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        total += count
        # A keep-alive connection's thread waiting for the next request is idle too.
        if any(m in frames[-1] for m in _IDLE_LEAVES) or (
            _READ in frames[-1] and "handle_one_request" in frames[-2]
        ):
            idle += count
            continue
        found = [name for frame in frames for marker, name in components if marker in frame]
        component = found[-1] if found else "other (interpreter, stdlib, threads)"
        if _READ in frames[-1] and component.startswith("botocore"):
            component = WAITING  # the time the emulator (any engine, a JVM too) took to answer
        shares[component] += count
    busy = total - idle
    shares_of_busy = {k: v / busy for k, v in shares.most_common()} if busy else {}
    return dict(samples=total, idle_share=idle / max(1, total), shares=shares_of_busy, path=str(path))


class Profiles:
    """py-spy recording each of ``pids`` for ``duration_s`` in the background; ``finish()``
    waits and summarizes (nothing when py-spy is missing)."""

    def __init__(self, pids: dict[str, int], duration_s: float, out_dir: Path, label: str) -> None:
        exe = shutil.which("py-spy", path=Path(sys.executable).parent) or shutil.which("py-spy")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for name, pid in pids.items() if exe else ():
            out = out_dir / f"{label}-{name}.txt"
            seconds = str(max(1, round(duration_s)))
            command = [str(exe), "record", "--pid", str(pid), "--duration", seconds, "--rate", "67",
                       "--format", "raw", "--nonblocking", "--output", str(out)]  # fmt: skip
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.runs[name] = (process, out)

    def finish(self, timeout_s: float = 60.0) -> dict[str, Any]:
        result = {}
        for name, (process, out) in self.runs.items():
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)
            if out.is_file() and out.stat().st_size > 0:
                result[name] = summarize(out, MOTO_COMPONENTS if name == "moto" else STACK_COMPONENTS)
        return result
