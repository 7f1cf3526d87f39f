"""ManagedProcess.stop ends the whole tree: a service's own children, even in sessions of their
own (LocalStack starts DynamoDB Local and kinesis-local that way), and even when the service
ignores SIGTERM."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

from ripple_local.processes import ManagedProcess, ProcessRecord, descendants

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


def _gone(records: list[ProcessRecord], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if all(record.live() is None for record in records):
            return True
        time.sleep(0.05)
    return False


def test_stop_kills_children_in_their_own_sessions(tmp_path: Path) -> None:
    service = Service(tmp_path, "polite").start_on_any_free_port()
    assert service.pid is not None
    tree = service.records()
    assert len(tree) == 2 and os.getsid(tree[1].pid) != os.getsid(service.pid)
    service.stop()
    assert _gone(tree)


def test_stop_kills_a_service_that_ignores_sigterm_and_its_children(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = Service(tmp_path, "stubborn").start_on_any_free_port()
    tree = service.records()
    assert len(tree) == 2
    with caplog.at_level(logging.WARNING, logger="ripple_local.processes"):
        service.stop()
    assert _gone(tree)
    assert "ignored SIGTERM; killing it" in caplog.text  # the grace period passed, then SIGKILL


def test_a_service_dies_with_the_thread_that_started_it(tmp_path: Path) -> None:
    """However the stack ends (SIGKILL, out of memory), its services end with it: each is
    started with a parent-death signal. Here the starting thread ends without stopping it."""
    import threading

    started: list[Service] = []
    thread = threading.Thread(
        target=lambda: started.append(Service(tmp_path, "stubborn").start_on_any_free_port())
    )
    thread.start()
    thread.join()
    (service,) = started
    main = [r for r in service.records() if r.pid == service.pid]
    assert _gone(main), "the service outlived the thread that started it"


def test_a_record_tells_a_process_from_a_later_one_with_the_same_pid() -> None:
    me = ProcessRecord.of("me", psutil.Process())
    assert me.live() is not None
    assert ProcessRecord(me.name, me.pid, me.create_time + 1, me.cmdline).live() is None
    assert ProcessRecord(me.name, me.pid, me.create_time, ("other",)).live() is None
    assert ProcessRecord.from_json(me.to_json()) == me


def test_a_runner_spec_travels_as_json() -> None:
    from ripple_local.runner_processes import RunnerSpec

    spec = RunnerSpec(
        function_id="FanoutFunction",
        root_dir="/r",
        state_dir="/s",
        stack_name="st",
        region="us-east-1",
        account_id="000000000000",
        endpoints={"default": "http://127.0.0.1:1", "overrides": {"dynamodb": "http://127.0.0.1:2"}},
        sources=[
            {"event_name": "PostsStream", "properties": {"Stream": "arn", "ParallelizationFactor": "4"}}
        ],
        retry_backoff={"initial_s": 0.1, "multiplier": 2.0, "maximum_s": 5.0},
    )
    assert RunnerSpec.from_json(spec.to_json()) == spec


def test_a_remote_mappings_stats_add_up_over_its_processes() -> None:
    from ripple_local.esm import MappingStats
    from ripple_local.runner_processes import RemoteMapping, RunnerProcess, RunnerSpec

    zero = MappingStats().snapshot()
    spec = RunnerSpec("Fn", "/r", "/s", "st", "us-east-1", "1", {"default": "http://x"}, [])
    mapping = RemoteMapping(RunnerProcess(spec, {}), "Fn.Posts", "st-Fn", "arn", {"Stream": "arn"})
    mapping._update({**zero, "batches": 3, "records_ok": 30})
    mapping._process_exited()  # the process died; a new one starts counting from 0
    mapping._update({**zero, "batches": 1, "records_ok": 5})
    assert (mapping.stats.batches, mapping.stats.records_ok) == (4, 35)
    assert not mapping.running
