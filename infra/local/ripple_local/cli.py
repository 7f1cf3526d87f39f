"""``python -m ripple_local``: run the local stack, or only create its resources.

``up`` blocks until Ctrl-C or SIGTERM and then stops everything in order, so no emulator or
redis-server is left behind. ``create-resources`` is for an emulator someone else runs (e.g.
LocalStack from infra/docker-compose.yml).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ripple_local.aws import LOCAL_REGION, AwsClients, Endpoints
from ripple_local.cfn import load_template, parameter_values
from ripple_local.commands import register as register_commands
from ripple_local.emulators import DYNAMODB_LOCAL
from ripple_local.processes import PortInUse
from ripple_local.resources import create_resources
from ripple_local.samconfig import load_sam_environment
from ripple_local.stack import (
    DEFAULT_EMULATOR,
    EMULATORS,
    RUNNER_MODES,
    RUNNERS_PROCESSES,
    SAMCONFIG_FILE,
    TEMPLATE_FILE,
    LocalStack,
    StackAlreadyRunning,
)
from ripple_local.tools import ToolMissing

__all__ = ["find_root", "main"]

logger = logging.getLogger(__name__)


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) that holds template.yaml."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / TEMPLATE_FILE).is_file():
            return directory
    raise FileNotFoundError(f"no {TEMPLATE_FILE} in {here} or its parents; pass --root-dir")


def _parser() -> argparse.ArgumentParser:
    # Options every command takes, given after the command: `up --stack-name x`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root-dir", type=Path, default=None, help="repository root (default: found from cwd)"
    )
    common.add_argument("--stack-name", default="ripple-local", help="prefix of physical resource names")
    common.add_argument("--config-env", default="local", help="samconfig.toml environment for parameters")
    common.add_argument("--log-level", default="INFO", help="logging level of the local stack")

    invoked = Path(sys.argv[0]).name
    prog = invoked if invoked == "ripple" else "python -m ripple_local"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up", parents=[common], help="run emulator, Redis, API and stream runners until Ctrl-C"
    )
    up.add_argument(
        "--emulator",
        choices=EMULATORS,
        default=DEFAULT_EMULATOR,
        help="dynamodb-local: DynamoDB + Streams on DynamoDB Local, the rest on moto (default); "
        "moto: everything on moto; localstack: everything on LocalStack (host mode)",
    )
    up.add_argument(
        "--persist", action="store_true", help="keep DynamoDB Local's data in <state-dir>/dynamodb"
    )
    up.add_argument("--api-port", type=int, default=3000)
    up.add_argument("--emulator-port", type=int, default=4566, help="moto's (or LocalStack's) port")
    up.add_argument("--dynamodb-port", type=int, default=8000, help="DynamoDB Local's port")
    up.add_argument("--redis-port", type=int, default=6379)
    up.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus exporter port (default 9464, or a free port if that is taken; 0 = any free port)",
    )
    up.add_argument("--no-metrics", action="store_true", help="run no Prometheus exporter")
    up.add_argument(
        "--runners",
        choices=RUNNER_MODES,
        default=RUNNERS_PROCESSES,
        help="processes: each function's stream runners in a process of its own, as Lambda runs "
        "functions apart (default); in-process: threads of this process",
    )
    output = up.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="no line per API request on the terminal")
    output.add_argument(
        "--verbose", action="store_true", help="show the functions' logs and EMF on the terminal too"
    )
    up.add_argument(
        "--emulator-url", default=None, help="reuse a running emulator (all AWS APIs) instead of starting one"
    )
    up.add_argument(
        "--dynamodb-url",
        default=None,
        help="reuse a running DynamoDB + Streams (with --emulator-url for the rest)",
    )
    up.add_argument("--redis-url", default=None, help="reuse a running Redis (redis://host:port)")
    up.add_argument(
        "--state-dir", type=Path, default=None, help="logs and checkpoints (default: <root>/.local)"
    )

    create = commands.add_parser(
        "create-resources", parents=[common], help="create the template's resources on an emulator"
    )
    create.add_argument("--emulator-url", required=True)
    create.add_argument("--dynamodb-url", default=None, help="DynamoDB's endpoint, if not the emulator's")
    register_commands(commands, common)  # check-convergence, rebuild-feed, rebuild-cache, replay-failures
    return parser


class _StopRequested(BaseException):
    """A stop signal arrived (Ctrl-C, the terminal closing, a process manager's SIGTERM)."""


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    for sig in _STOP_SIGNALS:  # one stop at a time: the orderly one is already under way
        signal.signal(sig, signal.SIG_IGN)
    raise _StopRequested(signal.Signals(signum).name)


class _Terminal:
    """Where ``up`` talks to a person, apart from everything the functions print.

    The functions' own output (Powertools JSON logs, EMF documents, warnings) and the stack's
    log go to files under ``<state>/logs/``; the terminal gets the status table, one line per
    API request (none with ``quiet``), and warnings. ``verbose`` shows everything there too.
    Writes to a terminal that has gone away (SIGHUP) are dropped, never raised.
    """

    def __init__(self, logs_dir: Path, *, quiet: bool, verbose: bool, level: str) -> None:
        logs_dir.mkdir(parents=True, exist_ok=True)
        self.stream = sys.stdout
        self.quiet = quiet
        self._functions = open(logs_dir / "functions.log", "a", buffering=1)  # noqa: SIM115 - closed in close()
        captured: Any = _Tee(self._functions, self.stream) if verbose else self._functions
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = captured
        logging.captureWarnings(True)  # e.g. Powertools' "No application metrics to publish"
        root = logging.getLogger()
        root.handlers.clear()
        root.setLevel(level.upper())
        to_file = logging.FileHandler(logs_dir / "stack.log")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        root.addHandler(to_file)
        to_terminal = logging.StreamHandler(_Safe(self.stream))
        to_terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        to_terminal.setLevel(logging.DEBUG if verbose else logging.WARNING)
        if not verbose:  # warnings of the functions' libraries belong to their log
            to_terminal.addFilter(lambda record: record.name != "py.warnings")
        root.addHandler(to_terminal)

    def say(self, text: str) -> None:
        _Safe(self.stream).write(text + "\n")

    def request(self, method: str, route: str, status: int, elapsed_ms: float) -> None:
        if not self.quiet:
            self.say(f"  {method:<6} {route:<34} {status}  {elapsed_ms:7.1f} ms")

    def close(self) -> None:
        sys.stdout, sys.stderr = self._saved
        logging.captureWarnings(False)
        self._functions.close()


class _Safe:
    """A text stream whose write never raises (the terminal may be gone)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()


class _Tee:
    def __init__(self, *streams: Any) -> None:
        self._streams = [_Safe(s) for s in streams]

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


def _up(args: argparse.Namespace, root: Path) -> int:
    endpoints = None
    if args.emulator_url is not None:
        endpoints = Endpoints.of(args.emulator_url, args.dynamodb_url)
    elif args.dynamodb_url is not None:
        raise SystemExit("--dynamodb-url needs --emulator-url (where SQS and Secrets Manager are)")
    if args.persist and (args.emulator != DYNAMODB_LOCAL or endpoints is not None):
        raise SystemExit(
            "ripple_local: --persist keeps DynamoDB Local's data: use it with --emulator dynamodb-local"
        )
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):  # the local stack never uses a real AWS profile;
        os.environ.pop(name, None)  # a missing one would stop every boto3 client from starting
    # Absolute: the services run with the state directory as their working directory.
    state_dir = (args.state_dir if args.state_dir is not None else root / ".local").resolve()
    for sig in _STOP_SIGNALS:  # from here on, any of them stops everything in order
        signal.signal(sig, _raise_stop)
    terminal = _Terminal(state_dir / "logs", quiet=args.quiet, verbose=args.verbose, level=args.log_level)
    stack = LocalStack(
        root,
        api_port=args.api_port,
        emulator_port=args.emulator_port,
        dynamodb_port=args.dynamodb_port,
        redis_port=args.redis_port,
        endpoints=endpoints,
        emulator=args.emulator,
        persist=args.persist,
        redis_url=args.redis_url,
        state_dir=state_dir,
        stack_name=args.stack_name,
        config_env=args.config_env,
        metrics_port=args.metrics_port,
        with_metrics=not args.no_metrics,
        request_log=terminal.request,
        runners=args.runners,
    )
    try:
        stack.preflight()
    except (PortInUse, StackAlreadyRunning) as error:  # nothing started: one line, exit 1
        terminal.say(f"ripple_local: {error}")
        terminal.close()
        return 1
    status = 0
    emulator = args.emulator if endpoints is None else f"the emulator at {endpoints.default}"
    try:
        terminal.say(f"Starting the local stack ({emulator}); logs in {state_dir / 'logs'} ...")
        stack.start()
        logger.info("resources:\n%s", stack.describe_resources())
        terminal.say(stack.summary())
        terminal.say("Press Ctrl-C to stop." + ("" if args.quiet else " Requests:"))
        while stack.failure is None:
            time.sleep(1.0)
        logger.error("the local stack cannot go on: %s (see %s)", stack.failure, state_dir / "logs")
        status = 1
    except _StopRequested as stop:
        logger.info("received %s, stopping", stop)
    except (PortInUse, StackAlreadyRunning, ToolMissing) as error:
        terminal.say(f"ripple_local: {error}")
        status = 1
    except Exception as error:  # a startup failure: one line here, the traceback in the log
        logger.debug("startup failed", exc_info=True)
        logging.getLogger(__name__).error("the local stack failed: %s (see %s)", error, state_dir / "logs")
        status = 1
    finally:
        stack.stop()
        terminal.say("Ripple local stack stopped.")
        terminal.close()
    return status


def _create_resources(args: argparse.Namespace, root: Path) -> int:
    template = load_template(root / TEMPLATE_FILE)
    overrides: dict[str, str] = {}
    region = LOCAL_REGION
    samconfig = root / SAMCONFIG_FILE
    if samconfig.is_file():
        environment = load_sam_environment(samconfig, args.config_env)
        overrides, region = environment.parameter_overrides, environment.region or LOCAL_REGION
    clients = AwsClients.for_endpoints(Endpoints.of(args.emulator_url, args.dynamodb_url), region)
    resources = create_resources(template, clients, args.stack_name, parameter_values(template, overrides))
    for resource in resources.resources.values():
        print(f"{resource.logical_id:<24} {resource.type:<30} {resource.ref}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    try:
        root = args.root_dir.resolve() if args.root_dir is not None else find_root()
        if hasattr(args, "run"):  # a command from ripple_local.commands
            return int(args.run(args, root))
        if args.command == "up":
            return _up(args, root)
        return _create_resources(args, root)
    except (ToolMissing, FileNotFoundError) as error:  # not installed yet, or not in a checkout
        print(f"ripple_local: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
