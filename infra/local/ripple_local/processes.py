"""Start and stop the real services the local stack needs: DynamoDB Local, moto and redis-server.

Tests and ``up`` use real servers over real sockets (not in-process mocks) so that what works
locally works against AWS's wire protocol too. Each service runs in its own session, so a
Ctrl-C in the terminal reaches only ``up``, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psutil

from ripple_local import aws, dynamodb_local, tools

__all__ = [
    "DynamoDBLocalIndexError",
    "DynamoDBLocalProcess",
    "EmulatorProcess",
    "ManagedProcess",
    "PortInUse",
    "ProcessRecord",
    "RedisProcess",
    "descendants",
    "find_redis_server",
    "free_port",
    "http_answers",
    "kill_all",
    "port_in_use",
    "port_owner",
    "wait_for_port",
]

logger = logging.getLogger(__name__)

_REDIS_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it; a race with others is possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    _wait_until(lambda: port_in_use(host, port), timeout, f"{host}:{port} to accept connections")


def http_answers(url: str) -> bool:
    """True when an HTTP server answers at ``url`` (any status code counts)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _wait_until(
    ready: Callable[[], bool], timeout: float, what: str, alive: Callable[[], bool] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if alive is not None and not alive():
            raise RuntimeError(f"process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def find_redis_server() -> str:
    """Path of redis-server: on PATH, else in the usual system directories."""
    found = shutil.which("redis-server")
    if found:
        return found
    for directory in _REDIS_DIRS:
        candidate = Path(directory) / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError("redis-server not found on PATH or in " + ", ".join(_REDIS_DIRS))


@dataclass(frozen=True)
class ProcessRecord:
    """A process this code started (or one of its children), as written to a state directory:
    enough to find it again after a crash, and to be sure it is still the same process (a pid
    can be reused; its creation time and command line cannot both match by chance)."""

    name: str
    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, name: str, process: psutil.Process) -> ProcessRecord:
        with process.oneshot():
            return cls(name, process.pid, process.create_time(), tuple(process.cmdline()))

    def live(self) -> psutil.Process | None:
        """The process, if it is still running and is still the one recorded."""
        try:
            process = psutil.Process(self.pid)
            with process.oneshot():
                same = process.create_time() == self.create_time and tuple(process.cmdline()) == self.cmdline
                return process if same and process.status() != psutil.STATUS_ZOMBIE else None
        except psutil.Error:
            return None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "create_time": self.create_time,
            "cmdline": list(self.cmdline),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ProcessRecord:
        return cls(
            str(data["name"]),
            int(data["pid"]),  # type: ignore[call-overload]
            float(data["create_time"]),  # type: ignore[arg-type]
            tuple(str(part) for part in data["cmdline"]),  # type: ignore[attr-defined]
        )


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (children started in sessions of their own included)."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def kill_all(processes: list[psutil.Process], grace_s: float = 0.0) -> None:
    """SIGTERM (when ``grace_s`` > 0, then wait that long) and SIGKILL what is left."""
    alive = [p for p in processes if p.is_running()]
    if grace_s > 0:
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(alive, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def port_owner(port: int) -> str | None:
    """Who listens on TCP ``port`` on this machine: ``"redis-server (pid 123)"``, or None."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
            if connection.pid is None:
                return "a process of another user"
            try:
                process = psutil.Process(connection.pid)
                command = " ".join(process.cmdline()[:3]) or process.name()
            except psutil.Error:
                command = "a process"
            return f"{command} (pid {connection.pid})"
    return None


class PortInUse(RuntimeError):
    """A port the stack wants is taken; the message names the port and what holds it."""

    def __init__(self, service: str, host: str, port: int) -> None:
        owner = port_owner(port)
        super().__init__(
            f"{service}: port {port} on {host} is already in use"
            + (f" by {owner}" if owner else "")
            + "; stop it, or choose another port (see --help)"
        )
        self.port = port


# Linux prctl(2): deliver this signal to the child when the thread that started it dies, so no
# service outlives the stack, however the stack ends (SIGKILL and out-of-memory included).
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """preexec_fn: runs in the child between fork and exec; calls nothing but prctl (resolved
    in the parent), so it is safe although the stack has threads."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    """A child service with a log file, a readiness check, and a clean stop.

    ``stop()`` ends the whole tree: a service that starts services of its own in their own
    sessions (LocalStack starts DynamoDB Local and kinesis-local) leaves none behind.
    """

    name = "process"
    start_timeout_s = 30.0
    stop_grace_s = 10.0  # SIGTERM, then this long before SIGKILL

    def __init__(self, host: str, port: int, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.host = host
        self.port = port
        self.state_dir = (
            Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="ripple-local-"))
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Where clients reach the service."""
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        """The service's stdout and stderr."""
        return self.state_dir / "logs" / f"{self.name}-{self.port}.log"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def records(self) -> list[ProcessRecord]:
        """The running service and its descendants, for the state directory's record."""
        if self._process is None:
            return []
        try:
            main = psutil.Process(self._process.pid)
            return [ProcessRecord.of(self.name, p) for p in [main, *main.children(recursive=True)]]
        except psutil.Error:
            return []

    def command(self) -> Sequence[str]:
        """The argv that starts the service."""
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The child's whole environment; None inherits ours."""
        return None

    def ready(self) -> bool:
        """True once the service answers requests."""
        raise NotImplementedError

    @classmethod
    def start_on_free_port(
        cls, host: str = "127.0.0.1", state_dir: str | os.PathLike[str] | None = None, attempts: int = 3
    ) -> Self:
        """A new process of this kind, started on a port the OS reports free."""
        return cls(host, 0, state_dir).start_on_any_free_port(attempts)

    def start_on_any_free_port(self, attempts: int = 3) -> Self:
        """Start on a port the OS reports free, trying another one if it is taken meanwhile.

        A port from the ephemeral range can be taken between picking and binding, by a new
        outgoing connection or by a client socket in TIME_WAIT (moto closes every connection,
        so a busy emulator leaves thousands of those behind).
        """
        for attempt in range(1, attempts + 1):
            self.port = free_port(self.host)
            try:
                return self.start()
            except RuntimeError:
                if attempt == attempts:
                    raise
                logger.warning("%s could not bind port %d; trying another", self.name, self.port)
        raise AssertionError("unreachable")

    def start(self, timeout: float | None = None) -> Self:
        """Start the service and wait until it answers; raise PortInUse when its port is taken,
        RuntimeError with the log tail when it does not come up.

        The service gets SIGKILL if the thread that started it dies (Linux PR_SET_PDEATHSIG):
        start services from a thread that lives as long as they should (the main thread)."""
        timeout = self.start_timeout_s if timeout is None else timeout
        if self.running:
            return self
        if port_in_use(self.host, self.port):
            raise PortInUse(self.name, self.host, self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - stays open for the child; closed in stop()
        logger.info("starting %s on %s:%d (log: %s)", self.name, self.host, self.port, self.log_path)
        self._process = subprocess.Popen(
            list(self.command()),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.state_dir,
            env=self.environment(),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            _wait_until(
                self.ready, timeout, f"{self.name} on {self.host}:{self.port}", alive=lambda: self.running
            )
        except (TimeoutError, RuntimeError) as error:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {error}\n{self.log_tail()}") from error
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Terminate, wait, and kill if it will not go; then kill what it left running."""
        grace = self.stop_grace_s if timeout is None else timeout
        process, self._process = self._process, None
        if process is not None:
            tree = descendants(process.pid)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    logger.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, process.pid)
                    tree += descendants(process.pid)
                    process.kill()
                    process.wait(10)
            kill_all(tree)  # children in sessions of their own (psutil checks each is still the same)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the service's log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class DynamoDBLocalIndexError(Exception):
    """DynamoDB Local started but its database could not be indexed (not a port problem, so
    not a RuntimeError: :meth:`ManagedProcess.start_on_any_free_port` must not retry it)."""


class DynamoDBLocalProcess(ManagedProcess):
    """DynamoDB Local (AWS's own engine, DynamoDB and DynamoDB Streams on one endpoint), bound
    to ``host`` only. Its database is kept in ``db_path`` when given (``up --persist``), else
    in a scratch directory on a RAM-backed file system, removed at :meth:`stop` (``-inMemory``
    where there is none with room); either file gets the stream-record indexes DynamoDB Local
    lacks (``ripple_local.dynamodb_local`` says why and what they change). For comparison
    (``bench.stream_backlog``): ``in_memory=True`` runs it ``-inMemory`` as its jar does, and
    ``index_streams=False`` keeps the file without the indexes.

    The jar and its loopback launcher are installed by ``python -m ripple_local.tools install``
    (bootstrap runs it); a missing install raises ToolMissing naming the command to run.
    """

    name = "dynamodb-local"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        state_dir: str | os.PathLike[str] | None = None,
        db_path: str | os.PathLike[str] | None = None,
        *,
        in_memory: bool = False,
        index_streams: bool = True,
    ) -> None:
        super().__init__(host, port, state_dir)
        if in_memory and db_path is not None:
            raise ValueError("a persisted database is a file, not -inMemory")
        self.db_path = Path(db_path) if db_path is not None else None
        self.in_memory = in_memory
        self.index_streams = index_streams
        self.scratch: dynamodb_local.ScratchDir | None = None  # the unpersisted database's directory
        self.indexed = False  # True while the stream-record indexes are in place
        self.install = tools.dynamodb_local()
        self.java = tools.find_java("java")

    @property
    def url(self) -> str:
        """The endpoint URL of DynamoDB and DynamoDB Streams."""
        return f"http://{self.host}:{self.port}"

    @property
    def scratch_path(self) -> Path | None:
        """The scratch directory of an unpersisted database while it runs from one."""
        return self.scratch.path if self.scratch is not None else None

    @property
    def database_dir(self) -> Path | None:
        """Where the database file is (``db_path`` or the scratch directory); None in memory."""
        return self.db_path if self.db_path is not None else self.scratch_path

    def command(self) -> Sequence[str]:
        return self.install.command(self.java, self.host, self.port, self.database_dir)

    def ready(self) -> bool:
        """DynamoDB Local answers any HTTP request (400 without a signature) once it serves."""
        return http_answers(self.url)

    def start(self, timeout: float | None = None) -> Self:
        """Start as :meth:`ManagedProcess.start` does, then index its database's stream records:
        a first signed request makes DynamoDB Local create its schema, then the indexes are
        added before anyone else's traffic. Raises what ``start`` raises, and
        DynamoDBLocalIndexError (having stopped it) if the indexing fails."""
        if self.running:
            return self
        if self.db_path is not None:
            self.db_path.mkdir(parents=True, exist_ok=True)
        elif not self.in_memory and self.scratch is None:
            self.scratch = dynamodb_local.scratch_dir()
        try:
            super().start(timeout)
        except BaseException:  # PortInUse too: start_on_any_free_port then tries another port
            self.stop()  # the scratch directory goes with it
            raise
        database_dir = self.database_dir
        if database_dir is None or not self.index_streams:
            return self
        try:
            aws.client("dynamodb", self.url).list_tables(Limit=1)
            self.indexed = dynamodb_local.index_stream_records(database_dir / dynamodb_local.DB_FILE)
        except Exception as error:  # botocore or sqlite3: either way the engine is not as asked
            self.stop()
            raise DynamoDBLocalIndexError(f"{self.name}: indexing its database failed: {error}") from error
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop as :meth:`ManagedProcess.stop` does, then remove the scratch database."""
        try:
            super().stop(timeout)
        finally:
            self.indexed = False
            scratch, self.scratch = self.scratch, None
            if scratch is not None:
                scratch.remove()


class EmulatorProcess(ManagedProcess):
    """moto in server mode: the AWS APIs (DynamoDB + Streams, SQS, Secrets Manager...) over HTTP."""

    name = "moto"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 4566, state_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(host, port, state_dir)

    @property
    def url(self) -> str:
        """The endpoint URL for boto3 (AWS_ENDPOINT_URL)."""
        return f"http://{self.host}:{self.port}"

    def command(self) -> Sequence[str]:
        """moto's server with this interpreter (so the venv's moto is the one used), its
        DynamoDB requests served one at a time (``ripple_local.moto_server`` says why)."""
        return [sys.executable, "-m", "ripple_local.moto_server", "-H", self.host, "-p", str(self.port)]

    def ready(self) -> bool:
        """moto answers HTTP once its app is up."""
        return http_answers(f"{self.url}/moto-api/")


class RedisProcess(ManagedProcess):
    """A throwaway redis-server: no persistence, bound to the given host only."""

    name = "redis"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 6379, state_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(host, port, state_dir)
        self.executable = find_redis_server()

    @property
    def url(self) -> str:
        """A redis:// URL for redis-py."""
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> Sequence[str]:
        """Caches are derived data: no RDB snapshots, no AOF."""
        return [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.state_dir),
        ]

    def ready(self) -> bool:
        """Ready once PING gets PONG."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
