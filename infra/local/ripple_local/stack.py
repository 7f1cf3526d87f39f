"""The whole local stack: emulators, Redis, resources, environment, API and stream runners.

One object that brings template.yaml up on a developer machine (``up``) or in a test, in the
order AWS would: data resources first, then the functions' configuration, then code, then
the event sources. ``prepare()`` stops before code, for integration tests that drive Ripple's
services directly.

Emulators (``emulator``, see ``ripple_local.emulators``): ``dynamodb-local`` (the default) runs
DynamoDB and DynamoDB Streams on DynamoDB Local, AWS's own engine, and SQS, Secrets Manager and
STS on moto; ``moto`` runs everything on moto; ``localstack`` everything on LocalStack.
``endpoints`` reuses services that are already running instead (a test session's, or
LocalStack from docker compose).

``start()`` also runs the Prometheus exporter (``ripple_local.metrics_exporter``, default
port 9464) in a thread: the functions get ``RIPPLE_METRICS_SINK`` pointing at it, and the
stream runners report retries, failure-queue sends and iterator age to it directly.

Stream runners (``runners``): ``in-process`` runs every event source mapping in a thread of
this process (tests drive them step by step, with their own handlers); ``processes`` runs
each function's mappings in a child process of its own (``ripple_local.runner_processes``),
as Lambda runs each function in execution environments of its own, so the API, fan-out and
the cache refresher do not share one interpreter lock. ``up`` uses ``processes``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.parse
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from ripple_local.api_server import ApiServer, RequestLog
from ripple_local.aws import LOCAL_REGION, AwsClients, Endpoints, client
from ripple_local.cfn import Resolver, load_template, parameter_values
from ripple_local.checkpoints import CheckpointStore
from ripple_local.emulators import DEFAULT_EMULATOR, DYNAMODB_LOCAL, EMULATORS, LOCALSTACK, start_emulators
from ripple_local.environment import (
    LOCAL_SERVICE_NAME,
    build_resolver,
    function_environment,
    stack_environment,
)
from ripple_local.esm import Handler, RetryBackoff, StreamEventSourceMapping, StreamObserver
from ripple_local.functions import (
    StreamEventSource,
    function_names,
    function_setting,
    load_handler,
    stream_event_sources,
)
from ripple_local.lambda_context import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, LambdaContextFactory
from ripple_local.metrics_bridge import ForwardingEMFProvider
from ripple_local.metrics_exporter import DEFAULT_METRICS_PORT, SINK_ENV, MetricsExporter
from ripple_local.processes import (
    DynamoDBLocalProcess,
    ManagedProcess,
    PortInUse,
    ProcessRecord,
    RedisProcess,
    http_answers,
    kill_all,
    port_in_use,
)
from ripple_local.resources import LocalResources, create_resources
from ripple_local.runner_processes import (
    RUNNER_MODES,
    RUNNERS_IN_PROCESS,
    RUNNERS_PROCESSES,
    RemoteMapping,
    RunnerProcess,
    RunnerSpec,
    code_paths,
)
from ripple_local.samconfig import load_sam_environment

__all__ = [
    "API_FUNCTION",
    "DEFAULT_EMULATOR",
    "EMULATORS",
    "RUNNERS_IN_PROCESS",
    "RUNNERS_PROCESSES",
    "RUNNER_MODES",
    "LocalStack",
    "runner_key",
]

logger = logging.getLogger(__name__)

API_FUNCTION = "ApiFunction"  # the function whose Handler is the Chalice app object
TEMPLATE_FILE = "template.yaml"
SAMCONFIG_FILE = "samconfig.toml"
# Written by a running `up` into its state directory: where its services listen, so the
# operator commands attach to them without flags.
CONNECTION_FILE = "stack.json"
# Every process the stack started (and their children), written as they start: what a later
# `up` on the same state directory reclaims if this one was killed before it could stop them.
SERVICES_FILE = "services.json"


class StackAlreadyRunning(RuntimeError):
    """Another live ``up`` uses the same state directory."""


def runner_key(function_id: str, event_name: str) -> str:
    """How runners are named: ``FanoutFunction.PostsStream``."""
    return f"{function_id}.{event_name}"


def _redis_host_port(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError(f"not a redis:// URL: {url}")
    return parsed.hostname, parsed.port or 6379


class LocalStack:
    """template.yaml running locally. Use as a context manager, or start()/stop().

    Services are started unless ``endpoints`` / ``redis_url`` point at running ones (for
    example LocalStack and Redis from infra/docker-compose.yml, or a test session's fixtures).
    ``emulator`` picks what is started (see the module docstring); ``persist`` keeps DynamoDB
    Local's data in ``<state_dir>/dynamodb`` between runs (otherwise it lives in RAM: a scratch
    file on ``/dev/shm``, or ``-inMemory``; ``ripple_local.dynamodb_local``).
    The functions' environment goes into ``environ`` (os.environ by default) and is restored
    by stop(). Pass a plain dict only when no real function code is imported: handlers read
    os.environ.

    ``metrics_port`` None means 9464, or a free port when 9464 is taken (a second stack, a test
    session next to ``make up``); an explicit port must be free. ``with_metrics=False`` runs
    no exporter.

    ``runners`` is where the stream runners run: ``in-process`` (threads here; the default for
    code and tests, which drain them step by step) or ``processes`` (one child process per
    function, see the module docstring).
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        api_port: int = 3000,
        emulator_port: int = 4566,
        redis_port: int = 6379,
        endpoints: Endpoints | None = None,
        redis_url: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        stack_name: str = "ripple-local",
        with_api: bool = True,
        with_runners: bool = True,
        *,
        host: str = "127.0.0.1",
        config_env: str = "local",
        retry_backoff: RetryBackoff | None = None,
        idle_sleep_s: float = 0.05,
        max_idle_sleep_s: float = 0.25,
        environ: MutableMapping[str, str] | None = None,
        metrics_port: int | None = None,
        with_metrics: bool = True,
        emulator: str = DEFAULT_EMULATOR,
        dynamodb_port: int = 8000,
        persist: bool = False,
        request_log: RequestLog | None = None,
        runners: str = RUNNERS_IN_PROCESS,
    ) -> None:
        if runners not in RUNNER_MODES:
            raise ValueError(f"runners must be one of {', '.join(RUNNER_MODES)}, not {runners!r}")
        if emulator not in EMULATORS:
            raise ValueError(f"emulator must be one of {', '.join(EMULATORS)}, not {emulator!r}")
        if persist and (emulator != DYNAMODB_LOCAL or endpoints is not None):
            raise ValueError("persist keeps DynamoDB Local's data: it needs the dynamodb-local emulator")
        self.root_dir = Path(root_dir).resolve()
        self.api_port = api_port
        self.emulator_port = emulator_port
        self.dynamodb_port = dynamodb_port
        self.redis_port = redis_port
        self.emulator = emulator
        self.persist = persist
        self.request_log = request_log  # one call per API response (up prints a line each)
        self.endpoints = endpoints
        self.redis_url = redis_url
        self.state_dir = Path(state_dir) if state_dir is not None else self.root_dir / ".local"
        self.stack_name = stack_name
        self.with_api = with_api
        self.with_runners = with_runners
        self.runner_mode = runners
        self.host = host
        self.config_env = config_env
        self.retry_backoff = retry_backoff
        self.idle_sleep_s = idle_sleep_s
        self.max_idle_sleep_s = max_idle_sleep_s
        self.environ: MutableMapping[str, str] = os.environ if environ is None else environ
        self.metrics_port = metrics_port
        self.with_metrics = with_metrics

        self.template: dict[str, Any] = {}
        self.region = LOCAL_REGION
        self.parameters: dict[str, str] = {}
        self.clients: AwsClients | None = None
        self.resources: LocalResources | None = None
        self.resolver: Resolver | None = None
        self.environment: dict[str, str] = {}
        self.checkpoints: CheckpointStore | None = None
        self.api: ApiServer | None = None
        self.runners: dict[str, StreamEventSourceMapping | RemoteMapping] = {}
        self.runner_processes: list[RunnerProcess] = []  # runners="processes": one per function
        self.metrics: MetricsExporter | None = None
        self._services: list[ManagedProcess] = []  # started by us, in start order
        self._redis: RedisProcess | None = None
        self._saved_environ: dict[str, str | None] = {}
        self._wrote_connection_file = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalStack:
        """Everything: services, resources, environment, API and stream runners (``summary()``
        says where each listens)."""
        try:
            self.prepare()
            if self.with_metrics:
                self.start_metrics()
            if self.with_api:
                self.start_api()
            if self.with_runners:
                self.start_runners()
        except BaseException:
            self.stop()
            raise
        self._write_connection_file()
        self._record_services()
        return self

    def reclaim_leftovers(self) -> list[ProcessRecord]:
        """Stop what an earlier stack on this state directory started and left running (it was
        killed before it could stop them). Only processes recorded in ``services.json`` are
        touched, each only if its pid, creation time and command line all still match.

        Raises StackAlreadyRunning when that earlier stack is itself still running.
        """
        recorded = self.read_connection_file(self.state_dir) or {}
        owner = recorded.get("pid")
        if isinstance(owner, int) and owner != os.getpid() and psutil.pid_exists(owner):
            with contextlib.suppress(psutil.Error):
                if any("ripple_local" in part for part in psutil.Process(owner).cmdline()):
                    raise StackAlreadyRunning(
                        f"another local stack (pid {owner}) is running with the state directory "
                        f"{self.state_dir}; stop it first, or pass --state-dir"
                    )
        path = self.state_dir / SERVICES_FILE
        try:
            entries = json.loads(path.read_text())
            records = [ProcessRecord.from_json(entry) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError):
            records = []
        leftovers = [(record, process) for record in records if (process := record.live()) is not None]
        if leftovers:
            for record, _ in leftovers:
                logger.warning(
                    "reclaiming %s (pid %d), left running by an earlier stack", record.name, record.pid
                )
            kill_all([process for _, process in leftovers], grace_s=2.0)
        path.unlink(missing_ok=True)
        return [record for record, _ in leftovers]

    def preflight(self) -> None:
        """What must hold before anything starts: nothing an earlier stack on this state
        directory left running (reclaimed), no other stack on it (StackAlreadyRunning), every
        port free (PortInUse). Only for a stack that starts services itself."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.endpoints is None or self.redis_url is None:
            self.reclaim_leftovers()
            self.check_ports()

    def check_ports(self) -> None:
        """Every port this stack will listen on must be free before anything starts: PortInUse
        names the port and the program that holds it (a second ``up``, another service)."""
        wanted: list[tuple[str, int]] = []
        if self.endpoints is None:
            wanted.append(("localstack" if self.emulator == LOCALSTACK else "moto", self.emulator_port))
            if self.emulator == DYNAMODB_LOCAL:
                wanted.append(("dynamodb-local", self.dynamodb_port))
        if self.redis_url is None:
            wanted.append(("redis", self.redis_port))
        if self.with_api:
            wanted.append(("api", self.api_port))
        if self.with_metrics and self.metrics_port:  # None picks a free port by itself
            wanted.append(("metrics", self.metrics_port))
        for name, port in wanted:
            if port and port_in_use(self.host, port):
                raise PortInUse(name, self.host, port)

    def _record_services(self) -> None:
        processes: list[Any] = [*self._services, *self.runner_processes]
        records = [record.to_json() for process in processes for record in process.records()]
        if records:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / SERVICES_FILE).write_text(json.dumps(records, indent=1) + "\n")

    def _write_connection_file(self) -> None:
        if self.endpoints is None:
            return
        document = {
            "stack_name": self.stack_name,
            "pid": os.getpid(),
            "endpoints": {"default": self.endpoints.default, **dict(self.endpoints.overrides)},
            "redis_url": self.redis_url,
            "api_url": self.api.url if self.api is not None else None,
        }
        (self.state_dir / CONNECTION_FILE).write_text(json.dumps(document, indent=2) + "\n")
        self._wrote_connection_file = True

    @staticmethod
    def read_connection_file(state_dir: Path) -> dict[str, Any] | None:
        """What a running ``up`` wrote into ``state_dir`` (None when no stack wrote one)."""
        try:
            document = json.loads((state_dir / CONNECTION_FILE).read_text())
        except (OSError, ValueError):
            return None
        return document if isinstance(document, dict) else None

    def prepare(self) -> LocalStack:
        """Services, resources and the functions' environment - no function code yet."""
        try:
            self.load_configuration()  # first: a broken template fails before anything starts
            self.start_services()
            self.create_resources()
            self.apply_environment()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def failure(self) -> str | None:
        """Why the stack cannot go on: a runner process that stayed down (None while all is well)."""
        return next((process.failure for process in self.runner_processes if process.failure), None)

    def stop(self) -> None:
        """Stop everything that was started, in reverse order; safe to call twice."""
        for runner_process in reversed(self.runner_processes):
            try:
                runner_process.stop()
            except Exception:
                logger.exception("stopping %s failed", runner_process.name)
        self.runner_processes = []
        for key, runner in reversed(list(self.runners.items())):
            try:
                runner.stop()
            except Exception:
                logger.exception("stopping runner %s failed", key)
        self.runners = {}
        if self.api is not None:
            self.api.stop()
            self.api = None
        self.stop_metrics()
        self.restore_environment()
        if self._wrote_connection_file:
            (self.state_dir / CONNECTION_FILE).unlink(missing_ok=True)
            self._wrote_connection_file = False
        for process in reversed(self._services):
            process.stop()
        if self._services:
            (self.state_dir / SERVICES_FILE).unlink(missing_ok=True)
        if self._redis is not None:
            self.redis_url = None  # ours is gone; a later start() starts a new one
        if any(process is not self._redis for process in self._services):
            self.endpoints = None
        self._services = []
        self._redis = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ steps

    def start_services(self) -> None:
        """Start the emulators and redis-server (after reclaiming what a killed earlier stack
        left running), or check that the given ones answer."""
        self.preflight()
        if self.endpoints is None:
            self.endpoints = self._start_emulators()
            self._record_services()
        else:
            for url in {self.endpoints.default, *self.endpoints.overrides.values()}:
                if not http_answers(url):
                    raise RuntimeError(f"no emulator answers at {url}")
        if self.redis_url is None:
            self._redis = self._start(RedisProcess(self.host, self.redis_port, self.state_dir))
            self.redis_url = self._redis.url
            self._record_services()
        else:
            _redis_host_port(self.redis_url)  # validate early

    def _start(self, process: Any) -> Any:
        self._services.append(process)  # stop() stops it even if start() fails half-way
        return process.start()

    def _start_emulators(self) -> Endpoints:
        running = start_emulators(
            self.emulator,
            self.state_dir,
            host=self.host,
            emulator_port=self.emulator_port,
            dynamodb_port=self.dynamodb_port,
            db_path=self.state_dir / "dynamodb" if self.persist else None,
        )
        self._services.extend(running.processes)
        return running.endpoints

    def load_configuration(self) -> None:
        """template.yaml plus the samconfig environment's parameter overrides."""
        self.template = load_template(self.root_dir / TEMPLATE_FILE)
        samconfig = self.root_dir / SAMCONFIG_FILE
        overrides: dict[str, str] = {}
        if samconfig.is_file():
            sam_environment = load_sam_environment(samconfig, self.config_env)
            overrides = sam_environment.parameter_overrides
            self.region = sam_environment.region or LOCAL_REGION
        self.parameters = parameter_values(self.template, overrides)

    def create_resources(self) -> LocalResources:
        """Tables, queues and secrets on the emulator, and the resolver that knows them."""
        if self.endpoints is None or self.redis_url is None:
            raise RuntimeError("start_services() must run first")
        self.clients = AwsClients.for_endpoints(self.endpoints, self.region)
        # With --persist the data outlives moto, so the JWT key must too (tokens stay valid).
        secret_store = self.state_dir / "secrets.json" if self.persist else None
        self.resources = create_resources(
            self.template, self.clients, self.stack_name, self.parameters, secret_store=secret_store
        )
        self._record_services()  # LocalStack starts its Kinesis emulator with the first stream
        redis_host, redis_port = _redis_host_port(self.redis_url)
        self.resolver = build_resolver(self.template, self.resources, self.parameters, redis_host, redis_port)
        return self.resources

    def apply_environment(self) -> dict[str, str]:
        """Put the union of the functions' environments into ``environ`` (saved for restore)."""
        if self.resolver is None or self.endpoints is None:
            raise RuntimeError("create_resources() must run first")
        self.environment = stack_environment(
            self.template, function_names(self.template), self.resolver, self.endpoints, self.region
        )
        if self.metrics is not None:
            self.environment[SINK_ENV] = self.metrics.sink_url
        for name, value in self.environment.items():
            self._set_environ(name, value)
        return self.environment

    def _set_environ(self, name: str, value: str) -> None:
        if name not in self._saved_environ:
            self._saved_environ[name] = self.environ.get(name)
        self.environ[name] = value

    def restore_environment(self) -> None:
        """Undo apply_environment()."""
        for name, value in self._saved_environ.items():
            if value is None:
                self.environ.pop(name, None)
            else:
                self.environ[name] = value
        self._saved_environ = {}

    def start_metrics(self, port: int | None = None) -> MetricsExporter:
        """Run the Prometheus exporter, point the functions' metrics at it (RIPPLE_METRICS_SINK)
        and attach the stream runners. ``port`` overrides ``metrics_port`` (0 = a free port).
        Works on a prepared stack too; stop_metrics() undoes it."""
        if self.metrics is not None:
            return self.metrics
        wanted = port if port is not None else self.metrics_port
        try:
            exporter = MetricsExporter(self.host, DEFAULT_METRICS_PORT if wanted is None else wanted).start()
        except OSError as error:
            if wanted is not None:
                raise RuntimeError(f"metrics port {self.host}:{wanted} is not available: {error}") from error
            logger.warning("metrics port %d is taken (%s); using a free port", DEFAULT_METRICS_PORT, error)
            exporter = MetricsExporter(self.host, 0).start()
        self.metrics = exporter
        # No CloudWatch here: the functions' EMF documents also go to the exporter.
        from ripple import observability

        observability.use_provider(ForwardingEMFProvider)
        if self.environment:
            self.environment[SINK_ENV] = exporter.sink_url
        self._set_environ(SINK_ENV, exporter.sink_url)
        for key, runner in self.runners.items():
            runner.observer = self._stream_observer(key)
        return exporter

    def stop_metrics(self) -> None:
        """Stop the exporter, detach the runners and take RIPPLE_METRICS_SINK away again."""
        if self.metrics is None:
            return
        for runner in self.runners.values():
            runner.observer = None
        self.metrics.stop()
        self.metrics = None
        self.environment.pop(SINK_ENV, None)
        if SINK_ENV in self._saved_environ:
            previous = self._saved_environ.pop(SINK_ENV)
            if previous is None:
                self.environ.pop(SINK_ENV, None)
            else:
                self.environ[SINK_ENV] = previous

    def _stream_observer(self, key: str) -> StreamObserver | None:
        if self.metrics is None:
            return None
        function_id, _, event_name = key.partition(".")
        return self.metrics.stream_observer(function_id, event_name)

    def handler(self, function_id: str) -> Any:
        """The function's handler, imported once (after the environment is in place)."""
        if not self.environment:
            raise RuntimeError("apply_environment() must run before function code is imported")
        return load_handler(self.template, function_id, self.root_dir)

    def start_api(self) -> ApiServer:
        """Serve the ApiFunction's Chalice app."""
        self.api = ApiServer(
            self.handler(API_FUNCTION),
            self.host,
            self.api_port,
            timeout_s=int(function_setting(self.template, API_FUNCTION, "Timeout", DEFAULT_TIMEOUT_S)),
            memory_mb=int(function_setting(self.template, API_FUNCTION, "MemorySize", DEFAULT_MEMORY_MB)),
            request_log=self.request_log,
        ).start()
        return self.api

    def make_runner(
        self,
        source: StreamEventSource,
        handler: Handler | None = None,
        retry_backoff: RetryBackoff | None = None,
    ) -> StreamEventSourceMapping:
        """A runner for one template stream event; ``handler`` replaces the function's (tests)."""
        if self.resolver is None or self.resources is None or self.endpoints is None:
            raise RuntimeError("create_resources() must run first")
        if self.checkpoints is None:
            self.checkpoints = CheckpointStore(self.state_dir)
        properties = self.resolver.resolve(source.properties)
        key = runner_key(source.function_id, source.event_name)
        return StreamEventSourceMapping(
            function_name=f"{self.stack_name}-{source.function_id}",
            handler=handler if handler is not None else self.handler(source.function_id),
            stream_arn=properties["Stream"],
            properties=properties,
            # Each runner thread gets its own clients: boto3 clients are not shared across threads here.
            streams_client=client("dynamodbstreams", self.endpoints, self.region),
            sqs_client=client("sqs", self.endpoints, self.region),
            checkpoint_store=self.checkpoints,
            context_factory=LambdaContextFactory.from_template(
                self.template, source.function_id, self.stack_name, self.region, self.resources.account_id
            ),
            retry_backoff=retry_backoff or self.retry_backoff,
            name=key,
            idle_sleep_s=self.idle_sleep_s,
            max_idle_sleep_s=self.max_idle_sleep_s,
            observer=self._stream_observer(key),
        )

    def start_runners(
        self, handlers: Mapping[str, Handler] | None = None
    ) -> dict[str, StreamEventSourceMapping | RemoteMapping]:
        """One polling runner per ``Type: DynamoDB`` event; ``handlers`` overrides by function id
        (in-process runners only: a runner process imports the function's own handler)."""
        if self.runner_mode == RUNNERS_PROCESSES:
            if handlers:
                raise ValueError("handlers can replace the functions' own only with in-process runners")
            return self.start_runner_processes()
        for source in stream_event_sources(self.template):
            key = runner_key(source.function_id, source.event_name)
            runner = self.make_runner(source, (handlers or {}).get(source.function_id))
            self.runners[key] = runner
            runner.start()
        return self.runners

    def start_runner_processes(self) -> dict[str, StreamEventSourceMapping | RemoteMapping]:
        """One child process per function with stream events, running that function's
        mappings; returns once each runs them (RuntimeError with its output if one cannot)."""
        if self.resolver is None or self.resources is None or self.endpoints is None:
            raise RuntimeError("create_resources() must run first")
        by_function: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for source in stream_event_sources(self.template):
            by_function.setdefault(source.function_id, []).append(
                (source.event_name, self.resolver.resolve(source.properties))
            )
        started: list[RunnerProcess] = []
        for function_id, sources in by_function.items():
            backoff = self.retry_backoff
            spec = RunnerSpec(
                function_id=function_id,
                root_dir=str(self.root_dir),
                state_dir=str(self.state_dir.resolve()),
                stack_name=self.stack_name,
                region=self.region,
                account_id=self.resources.account_id,
                endpoints={"default": self.endpoints.default, "overrides": dict(self.endpoints.overrides)},
                sources=[{"event_name": name, "properties": properties} for name, properties in sources],
                retry_backoff=(
                    {
                        "initial_s": backoff.initial_s,
                        "multiplier": backoff.multiplier,
                        "maximum_s": backoff.maximum_s,
                    }
                    if backoff is not None
                    else None
                ),
                idle_sleep_s=self.idle_sleep_s,
                max_idle_sleep_s=self.max_idle_sleep_s,
                log_level=logging.getLogger().getEffectiveLevel(),
            )
            process = RunnerProcess(spec, self._runner_environment(function_id))
            for event_name, properties in sources:
                key = runner_key(function_id, event_name)
                remote = RemoteMapping(
                    process,
                    key,
                    f"{self.stack_name}-{function_id}",
                    str(properties["Stream"]),
                    properties,
                    observer=self._stream_observer(key),
                )
                self.runners[key] = process.mappings[key] = remote
            self.runner_processes.append(process)
            started.append(process.start())
        for process in started:  # they import their functions side by side
            process.wait_ready()
        self._record_services()
        return self.runners

    def _runner_environment(self, function_id: str) -> dict[str, str]:
        """A runner process's environment: this process's (the functions' union, applied by
        apply_environment, and whatever was set on top), with the function's own values where
        the union had to pick another function's, and PYTHONPATH to this process's code."""
        if self.resolver is None:
            raise RuntimeError("create_resources() must run first")
        environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
        environment.update(self.environ)
        own = function_environment(self.template, function_id, self.resolver)
        for name, value in own.items():
            if self.environment.get(name) != value:
                environment[name] = value
        environment["POWERTOOLS_SERVICE_NAME"] = own.get("POWERTOOLS_SERVICE_NAME", LOCAL_SERVICE_NAME)
        inherited = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
        environment["PYTHONPATH"] = os.pathsep.join([*code_paths(), *inherited])
        return environment

    # ------------------------------------------------------------------ access

    def runner(
        self, function_id: str, event_name: str | None = None
    ) -> StreamEventSourceMapping | RemoteMapping:
        """A started runner, by function id and event name (the name may be omitted if unique)."""
        if event_name is not None:
            return self.runners[runner_key(function_id, event_name)]
        matches = [runner for key, runner in self.runners.items() if key.startswith(f"{function_id}.")]
        if len(matches) != 1:
            raise KeyError(f"{function_id} has {len(matches)} runners; name the event")
        return matches[0]

    def drain(self, timeout: float = 30.0) -> int:
        """Drain every runner until a whole round is quiet (fan-out feeds other streams)."""
        total = 0
        while True:
            handled = sum(runner.drain(timeout) for runner in self.runners.values())
            total += handled
            if handled == 0:
                return total

    def table_name(self, logical_id: str) -> str:
        """The physical name of a template table."""
        if self.resources is None:
            raise RuntimeError("create_resources() must run first")
        return self.resources[logical_id].ref

    def summary(self) -> str:
        """One status table for humans: every endpoint, the emulator in use, the state directory."""
        started = {process.url: process.name for process in self._services}

        def origin(url: str) -> str:
            return started.get(url, "reused")

        rows: list[tuple[str, str, str]] = []
        if self.api is not None:
            rows.append(("API", self.api.url, "Chalice app, as API Gateway + Lambda"))
        if self.endpoints is not None:
            dynamodb = self.endpoints.dynamodb
            if dynamodb != self.endpoints.default:
                rows.append(("DynamoDB + Streams", dynamodb, origin(dynamodb)))
                rows.append(("SQS, Secrets Manager", self.endpoints.default, origin(self.endpoints.default)))
            else:
                rows.append(("AWS APIs", dynamodb, origin(dynamodb)))
        rows.append(("Redis", str(self.redis_url), "redis-server" if self._redis else "reused"))
        if self.metrics is not None:
            rows.append(("metrics", self.metrics.url, "Prometheus exposition"))
        if self.runner_processes:
            where = ", ".join(f"{p.function_id} (pid {p.pid})" for p in self.runner_processes)
            rows.append(("stream runners", str(len(self.runners)), f"a process per function: {where}"))
        elif self.runners:
            rows.append(("stream runners", str(len(self.runners)), ", ".join(self.runners)))
        if self.persist:
            data = f"{self.state_dir / 'dynamodb'} (kept)"
        else:
            engines = [p for p in self._services if isinstance(p, DynamoDBLocalProcess)]
            scratch = engines[0].scratch_path if engines else None
            data = f"in memory ({scratch})" if scratch is not None else "in memory"
        rows.append(("data", data, f"emulator: {self.emulator if self._services else 'reused'}"))
        rows.append(("state, logs", str(self.state_dir), "logs/, stack.json, checkpoints"))
        width = max(len(name) for name, _, _ in rows)
        url_width = max(len(url) for _, url, _ in rows)
        lines = [f"Ripple local stack {self.stack_name!r} is up"]
        lines += [f"  {name:<{width}}  {url:<{url_width}}  {note}" for name, url, note in rows]
        return "\n".join(lines)

    def describe_resources(self) -> str:
        """Tables, queues and stream runners by name (for --verbose and the log)."""
        lines: list[str] = []
        if self.resources is not None:
            for logical_id, name in self.resources.table_names().items():
                lines.append(f"  table          {logical_id}: {name}")
            for logical_id, url in self.resources.queue_urls().items():
                lines.append(f"  queue          {logical_id}: {url}")
        for key, runner in self.runners.items():
            lines.append(f"  stream runner  {key} <- {runner.stream_arn}")
        return "\n".join(lines)
