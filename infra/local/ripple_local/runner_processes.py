"""Each function's stream runners in an OS process of its own, as Lambda runs each function
in execution environments of its own.

In one process the API and every stream runner share one interpreter lock: a fan-out burst
slows the API and the cache refresher, and a 2-core machine runs one core's worth of Python.
``LocalStack(runners="processes")`` (``up``'s default) starts, per function with ``Type:
DynamoDB`` events, ``python -m ripple_local.runner_processes``, which imports that function's
handler and runs its event source mappings (``ripple_local.esm``) exactly as the in-process
mode does. The parent keeps, per mapping, a :class:`RemoteMapping` with what is read from a
runner today - ``stats``, ``config``, ``stream_arn``, ``drain()`` - and:

* supervises: a runner process that dies is started again (its checkpoints make that safe:
  what it had not committed is delivered again), at most ``MAX_RESTARTS`` times in
  ``RESTART_WINDOW_S``; beyond that ``LocalStack.failure`` says so and ``up`` stops, loudly;
* makes it die with the stack: the child gets SIGKILL when the thread that started it dies
  (``processes._die_with_parent``; the thread is the process's supervisor, which lives until
  ``stop()``), watches its parent as a second guard, and is recorded in ``services.json`` so
  the next ``up`` reclaims it if all else failed;
* gives it the function's own environment (where it differs from the one-process union of
  every function's, e.g. ``POWERTOOLS_SERVICE_NAME``), and ``PYTHONPATH`` pointing at the
  code this process runs, so the child imports the same checkout;
* carries, on a pipe of its own (``control``), the child's log records (re-emitted through
  this process's logging, so ``stack.log`` and the terminal get them as before), the runner
  observer's calls (the Prometheus exporter's ``ripple_stream_*`` series), the mappings'
  ``MappingStats``, and answers to ``drain`` requests (sent on the child's stdin);
* copies the child's stdout (the functions' JSON logs and EMF lines) to this process's
  ``sys.stdout`` line by line (``up`` puts that in ``logs/functions.log``). The functions' EMF
  documents reach the exporter from the child itself: ``RIPPLE_METRICS_SINK`` is in its
  environment and it installs ``ForwardingEMFProvider`` as the stack does in-process.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from ripple_local.esm import MappingConfig, MappingStats, RetryBackoff, StreamObserver
from ripple_local.processes import ProcessRecord, _die_with_parent

__all__ = [
    "RUNNERS_IN_PROCESS",
    "RUNNERS_PROCESSES",
    "RUNNER_MODES",
    "RemoteMapping",
    "RunnerProcess",
    "RunnerSpec",
    "code_paths",
]

logger = logging.getLogger(__name__)

RUNNERS_IN_PROCESS = "in-process"
RUNNERS_PROCESSES = "processes"
RUNNER_MODES = (RUNNERS_PROCESSES, RUNNERS_IN_PROCESS)

MAX_RESTARTS = 3  # a runner process that dies more often than this in RESTART_WINDOW_S stays down
RESTART_WINDOW_S = 60.0
RESTART_DELAY_S = 1.0
START_TIMEOUT_S = 60.0  # importing a function and its layer takes 1-2 s; much more under load
STOP_GRACE_S = 15.0  # the child stops its runners (up to 10 s for a running handler), then SIGKILL
STATS_INTERVAL_S = 0.5
_PARENT_CHECK_S = 0.5


def code_paths() -> list[str]:
    """Where this process imports ``ripple_local`` and ``ripple`` from, for a child's PYTHONPATH."""
    import ripple
    import ripple_local

    return [
        str(Path(ripple_local.__file__).resolve().parents[1]),
        str(Path(ripple.__file__).resolve().parents[1]),
    ]


@dataclass(frozen=True)
class RunnerSpec:
    """Everything a runner process needs to run one function's mappings (JSON on its stdin)."""

    function_id: str
    root_dir: str
    state_dir: str
    stack_name: str
    region: str
    account_id: str
    endpoints: dict[str, Any]  # {"default": url, "overrides": {service: url}}
    sources: list[dict[str, Any]]  # [{"event_name": ..., "properties": {resolved}}]
    retry_backoff: dict[str, float] | None = None
    idle_sleep_s: float = 0.05
    max_idle_sleep_s: float = 0.25
    log_level: int = logging.INFO
    parent_pid: int = field(default_factory=os.getpid)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunnerSpec:
        return cls(**json.loads(text))


class RemoteMapping:
    """A mapping run by a runner process, as the parent sees it: the attributes of
    ``StreamEventSourceMapping`` that status output and tests read, ``drain()`` forwarded."""

    def __init__(
        self,
        process: RunnerProcess,
        key: str,
        function_name: str,
        stream_arn: str,
        properties: Mapping[str, Any],
        observer: StreamObserver | None = None,
    ) -> None:
        self.process = process
        self.name = key
        self.function_name = function_name
        self.stream_arn = stream_arn
        self.config = MappingConfig.from_properties(properties)
        self.mapping_id = f"{function_name}|{stream_arn}"
        self.observer = observer
        self._earlier = MappingStats()  # what processes of this mapping that have exited counted
        self._current = MappingStats()

    def __repr__(self) -> str:
        return f"RemoteMapping({self.name!r}, pid={self.process.pid})"

    @property
    def stats(self) -> MappingStats:
        """Counters over every process that ran this mapping (refreshed twice a second)."""
        earlier, current = self._earlier.snapshot(), self._current.snapshot()
        return MappingStats(**{name: earlier[name] + current[name] for name in earlier})

    @property
    def running(self) -> bool:
        return self.process.running

    def drain(self, timeout: float = 10.0) -> int:
        """As ``StreamEventSourceMapping.drain``, in the runner process."""
        return int(
            self.process.call("drain", timeout=timeout + 5.0, mapping=self.name, drain_timeout=timeout)
        )

    def start(self) -> None:
        """Runner processes start their mappings themselves."""

    def stop(self, timeout: float = 10.0) -> None:
        """Mappings stop with their process (``RunnerProcess.stop``)."""

    def _update(self, snapshot: Mapping[str, int]) -> None:
        self._current = MappingStats(**snapshot)

    def _process_exited(self) -> None:
        self._earlier = self.stats
        self._current = MappingStats()

    def _observe(self, event: str, args: Sequence[Any]) -> None:
        observer = self.observer
        if observer is None:
            return
        try:
            getattr(observer, event)(*args)
        except Exception:
            logger.exception("%s: stream observer failed on %s", self.name, event)


class _Call:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: str | None = None


class RunnerProcess:
    """One function's stream runners in a child process, supervised (see the module docstring)."""

    def __init__(self, spec: RunnerSpec, environment: Mapping[str, str]) -> None:
        self.spec = spec
        self.function_id = spec.function_id
        self.name = f"runners-{spec.function_id}"
        self.environment = dict(environment)
        self.mappings: dict[str, RemoteMapping] = {}
        self.failure: str | None = None  # set when the process stays down
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin_lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._call_ids = itertools.count(1)
        self._calls_lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._pumps: list[threading.Thread] = []
        self._tail: deque[str] = deque(maxlen=40)  # its last problems: stderr, WARNING+ logs
        self._start_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    @property
    def running(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None and self._ready.is_set()

    def records(self) -> list[ProcessRecord]:
        """The running child, for the state directory's record of what the stack started."""
        pid = self.pid
        if pid is None:
            return []
        try:
            return [ProcessRecord.of(self.name, psutil.Process(pid))]
        except psutil.Error:
            return []

    def start(self) -> RunnerProcess:
        """Start the supervisor, which starts the child; returns at once (``wait_ready``)."""
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"supervise-{self.name}", daemon=True
        )
        self._supervisor.start()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the child runs its mappings; RuntimeError (with its output) if it cannot."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._start_error is not None:
                raise RuntimeError(f"{self.name} did not start: {self._start_error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start within {timeout:.0f}s:\n{self.output_tail()}")

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM: the child stops its runners (an interrupted batch is redelivered next
        time) and exits; SIGKILL after ``grace_s``."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s (pid %d) did not stop in %.0fs; killing it", self.name, process.pid, grace_s
                )
                process.kill()
                process.wait(10)
        if self._supervisor is not None:
            self._supervisor.join(10)
            self._supervisor = None
        for pump in self._pumps:
            pump.join(5)

    def output_tail(self) -> str:
        """What the child last wrote to stderr or logged at WARNING and above."""
        return "\n".join(self._tail)

    # ------------------------------------------------------------------ supervision

    def _supervise(self) -> None:
        """Start the child and, while the stack runs, start it again when it dies. Runs in a
        thread of its own for the child's lifetime: the child dies with this thread."""
        exits: deque[float] = deque()
        while not self._stopping.is_set():
            try:
                process = self._spawn()
            except Exception as error:  # the interpreter cannot be started at all
                self._start_error = repr(error)
                self.failure = f"{self.name} could not be started: {error!r}"
                return
            returncode = process.wait()
            for pump in self._pumps:
                pump.join(5)
            self._fail_calls(f"{self.name} exited with status {returncode}")
            for mapping in self.mappings.values():
                mapping._process_exited()
            if self._stopping.is_set():
                return
            if not self._ready.is_set():  # it never came up: no point in starting it again
                self._start_error = f"exited with status {returncode}:\n{self.output_tail()}"
                self.failure = f"{self.name} {self._start_error}"
                return
            now = time.monotonic()
            exits.append(now)
            while exits and now - exits[0] > RESTART_WINDOW_S:
                exits.popleft()
            if len(exits) > MAX_RESTARTS:
                self.failure = (
                    f"{self.name} (stream runners of {self.function_id}) exited {len(exits)} times in "
                    f"{RESTART_WINDOW_S:.0f}s, last with status {returncode}; not restarting it"
                )
                logger.error("%s\n%s", self.failure, self.output_tail())
                return
            logger.error(
                "%s (pid %d) exited with status %s; starting it again (its checkpoints say where to resume)",
                self.name,
                process.pid,
                returncode,
            )
            self.restarts += 1
            if self._stopping.wait(RESTART_DELAY_S):
                return
            self._ready.clear()

    def _spawn(self) -> subprocess.Popen[bytes]:
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                # The function id is for people (ps) and tools (the benchmark's CPU accounting).
                [sys.executable, "-m", "ripple_local.runner_processes", str(write_fd), self.function_id],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd,),
                cwd=self.spec.state_dir,
                env=self.environment,
                start_new_session=True,  # a Ctrl-C reaches the stack only, which stops this in order
                preexec_fn=_die_with_parent,
            )
        finally:
            os.close(write_fd)
        control = os.fdopen(read_fd, "rb")
        self._process = process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        self._pumps = [
            threading.Thread(
                target=self._pump_control, args=(control,), name=f"{self.name}-control", daemon=True
            ),
            threading.Thread(
                target=self._pump_stdout, args=(process.stdout,), name=f"{self.name}-out", daemon=True
            ),
            threading.Thread(
                target=self._pump_stderr, args=(process.stderr,), name=f"{self.name}-err", daemon=True
            ),
        ]
        for pump in self._pumps:
            pump.start()
        process.stdin.write((self.spec.to_json() + "\n").encode())
        process.stdin.flush()
        return process

    # ------------------------------------------------------------------ the child's channels

    def _pump_control(self, control: IO[bytes]) -> None:
        with control:
            for line in control:
                try:
                    message = json.loads(line)
                    self._dispatch(message)
                except Exception:
                    logger.exception("%s: bad control message %r", self.name, line[:200])

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        kind = message.get("t")
        if kind == "observe":
            mapping = self.mappings.get(str(message["m"]))
            if mapping is not None:
                mapping._observe(str(message["e"]), message.get("a") or [])
        elif kind == "stats":
            for key, snapshot in (message.get("s") or {}).items():
                if key in self.mappings:
                    self.mappings[key]._update(snapshot)
        elif kind == "log":
            record = logging.makeLogRecord(
                {
                    "name": message.get("name", "ripple_local"),
                    "levelno": int(message.get("level", logging.INFO)),
                    "levelname": logging.getLevelName(int(message.get("level", logging.INFO))),
                    "msg": message.get("msg", ""),
                    "created": float(message.get("created", time.time())),
                    "processName": self.name,
                }
            )
            record.msecs = (record.created - int(record.created)) * 1000
            if record.levelno >= logging.WARNING:
                self._tail.append(record.getMessage())
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)
        elif kind == "reply":
            with self._calls_lock:
                call = self._calls.pop(int(message["id"]), None)
            if call is not None:
                call.result, call.error = message.get("result"), message.get("error")
                call.done.set()
        elif kind == "ready":
            mismatch = {
                name: path
                for name, path in (message.get("code") or {}).items()
                if path not in (self.environment.get("PYTHONPATH") or "").split(os.pathsep)
            }
            if mismatch:  # the child imported other code than this checkout's
                self._start_error = f"imported {mismatch} instead of {code_paths()}"
                with contextlib.suppress(ProcessLookupError):
                    if self._process is not None:
                        self._process.kill()
                return
            self._ready.set()

    def _pump_stdout(self, stream: IO[bytes]) -> None:
        with stream:
            for line in stream:
                try:
                    out = sys.stdout
                    out.write(line.decode(errors="replace"))
                    out.flush()
                except (OSError, ValueError):
                    pass

    def _pump_stderr(self, stream: IO[bytes]) -> None:
        """What the child writes outside logging (a crash's traceback): the log, at WARNING."""
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip("\n")
                self._tail.append(line)
                logger.warning("[%s] %s", self.name, line)

    # ------------------------------------------------------------------ requests

    def call(self, op: str, timeout: float = 60.0, **arguments: Any) -> Any:
        """Ask the child to do ``op`` (``drain``) and wait for its answer."""
        process = self._process
        if process is None or process.poll() is not None or process.stdin is None:
            raise RuntimeError(f"{self.name} is not running" + (f": {self.failure}" if self.failure else ""))
        call = _Call()
        with self._calls_lock:
            call_id = next(self._call_ids)
            self._calls[call_id] = call
        request = json.dumps({"id": call_id, "op": op, **arguments}) + "\n"
        try:
            with self._stdin_lock:
                process.stdin.write(request.encode())
                process.stdin.flush()
        except (BrokenPipeError, ValueError) as error:
            with self._calls_lock:
                self._calls.pop(call_id, None)
            raise RuntimeError(f"{self.name} is not running: {error}") from error
        if not call.done.wait(timeout):
            with self._calls_lock:
                self._calls.pop(call_id, None)
            raise TimeoutError(f"{self.name}: no answer to {op} within {timeout:.0f}s")
        if call.error is not None:
            raise RuntimeError(f"{self.name}: {op} failed: {call.error}")
        return call.result

    def _fail_calls(self, reason: str) -> None:
        with self._calls_lock:
            calls, self._calls = list(self._calls.values()), {}
        for call in calls:
            call.error = reason
            call.done.set()


# ====================================================================== the child


class _Channel:
    """JSON lines to the parent, one whole line per write."""

    def __init__(self, descriptor: int) -> None:
        self._stream = os.fdopen(descriptor, "wb", buffering=0)
        self._lock = threading.Lock()

    def send(self, **message: Any) -> None:
        data = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock, contextlib.suppress(BrokenPipeError, ValueError):
            self._stream.write(data)  # (a parent gone: the watchdog ends this process)


class _ChannelLogHandler(logging.Handler):
    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.channel.send(
                t="log", name=record.name, level=record.levelno, msg=text, created=record.created
            )
        except Exception:
            self.handleError(record)


class _RemoteObserver:
    """A StreamObserver whose calls travel to the parent's exporter."""

    def __init__(self, channel: _Channel, key: str) -> None:
        self._channel, self._key = channel, key

    def _send(self, event: str, *args: Any) -> None:
        self._channel.send(t="observe", m=self._key, e=event, a=list(args))

    def delivered(self, records: int, ages_ms: Sequence[float]) -> None:
        self._send("delivered", records, [round(age, 3) for age in ages_ms])

    def retried(self, records: int) -> None:
        self._send("retried", records)

    def bisected(self) -> None:
        self._send("bisected")

    def gave_up(self, records: int, sent_to_failure_queue: bool) -> None:
        self._send("gave_up", records, sent_to_failure_queue)

    def poll_failed(self) -> None:
        self._send("poll_failed")


def _watch_parent(parent_pid: int) -> None:
    """Second guard next to PR_SET_PDEATHSIG: exit once re-parented."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(_PARENT_CHECK_S)


def _child(argv: Sequence[str]) -> int:
    channel = _Channel(int(argv[0]))
    spec = RunnerSpec.from_json(sys.stdin.readline())
    with contextlib.suppress(AttributeError, ValueError):  # a line reaches the log as it is written
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if os.getppid() != spec.parent_pid:  # the parent died before the death signal was armed
        return 1
    threading.Thread(target=_watch_parent, args=(spec.parent_pid,), name="watch-parent", daemon=True).start()
    if sys.platform.startswith("linux"):  # name the process after the function (ps, top)
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(15, f"ripple-{spec.function_id}"[:15].encode(), 0, 0, 0)
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(_ChannelLogHandler(channel))
    root.setLevel(spec.log_level)
    logging.captureWarnings(True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closing terminal reaches the stack, which stops us

    from ripple_local.aws import Endpoints, client
    from ripple_local.cfn import load_template
    from ripple_local.checkpoints import CheckpointStore
    from ripple_local.esm import StreamEventSourceMapping
    from ripple_local.functions import load_handler
    from ripple_local.lambda_context import LambdaContextFactory
    from ripple_local.metrics_bridge import SINK_ENV, ForwardingEMFProvider, sink_for

    try:
        if os.environ.get(SINK_ENV):
            from ripple.observability import use_provider

            use_provider(ForwardingEMFProvider)
        root_dir = Path(spec.root_dir)
        template = load_template(root_dir / "template.yaml")
        handler = load_handler(template, spec.function_id, root_dir)
        endpoints = Endpoints(spec.endpoints["default"], dict(spec.endpoints.get("overrides") or {}))
        checkpoints = CheckpointStore(spec.state_dir)
        backoff = RetryBackoff(**spec.retry_backoff) if spec.retry_backoff else None
        mappings: dict[str, StreamEventSourceMapping] = {}
        for source in spec.sources:
            key = f"{spec.function_id}.{source['event_name']}"
            properties = source["properties"]
            mappings[key] = StreamEventSourceMapping(
                function_name=f"{spec.stack_name}-{spec.function_id}",
                handler=handler,
                stream_arn=properties["Stream"],
                properties=properties,
                streams_client=client("dynamodbstreams", endpoints, spec.region),
                sqs_client=client("sqs", endpoints, spec.region),
                checkpoint_store=checkpoints,
                context_factory=LambdaContextFactory.from_template(
                    template, spec.function_id, spec.stack_name, spec.region, spec.account_id
                ),
                retry_backoff=backoff,
                name=key,
                idle_sleep_s=spec.idle_sleep_s,
                max_idle_sleep_s=spec.max_idle_sleep_s,
                observer=_RemoteObserver(channel, key),
            )
        # Ready before the first delivery: a record that kills this process is then a crash to
        # restart from (bounded), not a process that "never came up".
        imported = code_paths()  # the parent checks they are the checkout it runs
        channel.send(t="ready", pid=os.getpid(), code={"ripple_local": imported[0], "ripple": imported[1]})
        for mapping in mappings.values():
            mapping.start()
    except Exception:
        logging.getLogger(__name__).exception("%s: stream runners could not start", spec.function_id)
        return 1

    def send_stats(previous: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        current = {key: mapping.stats.snapshot() for key, mapping in mappings.items()}
        if current != previous:
            channel.send(t="stats", s=current)
        return current

    def serve_requests() -> None:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                if request.get("op") != "drain":
                    raise ValueError(f"unknown request {request.get('op')!r}")
                result = mappings[request["mapping"]].drain(float(request.get("drain_timeout", 10.0)))
                send_stats({})
                channel.send(t="reply", id=request["id"], result=result)
            except Exception as error:
                channel.send(t="reply", id=request["id"], error=f"{type(error).__name__}: {error}")
        stopping.set()  # stdin closed: the parent is stopping or gone

    threading.Thread(target=serve_requests, name="requests", daemon=True).start()
    stats: dict[str, dict[str, int]] = {}
    while not stopping.wait(STATS_INTERVAL_S):
        stats = send_stats(stats)
    for mapping in mappings.values():
        mapping.stop()
    send_stats(stats)
    sink_url = os.environ.get(SINK_ENV)
    if sink_url:
        sink_for(sink_url).flush(5.0)  # the last invocations' metrics
    return 0


if __name__ == "__main__":
    status = _child(sys.argv[1:])
    # Everything that matters is written by now (checkpoints as they were committed, the
    # metrics flushed, the stats sent): skip the interpreter's finalizers, which take a second.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
