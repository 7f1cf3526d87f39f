"""``python -m ripple_local``: run the local stack, or only create its resources.

``up`` blocks until Ctrl-C or SIGTERM and then stops everything in order, so no emulator or
redis-server is left behind. ``create-resources`` is for an emulator someone else runs (e.g.
LocalStack from infra/docker-compose.yml).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ripple_local.aws import LOCAL_REGION, AwsClients, Endpoints
from ripple_local.cfn import load_template, parameter_values
from ripple_local.commands import register as register_commands
from ripple_local.resources import create_resources
from ripple_local.samconfig import load_sam_environment
from ripple_local.stack import DEFAULT_EMULATOR, EMULATORS, SAMCONFIG_FILE, TEMPLATE_FILE, LocalStack
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

    parser = argparse.ArgumentParser(prog="python -m ripple_local", description=__doc__)
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


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (the handlers only set an event; cleanup runs after)."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _up(args: argparse.Namespace, root: Path) -> int:
    endpoints = None
    if args.emulator_url is not None:
        endpoints = Endpoints.of(args.emulator_url, args.dynamodb_url)
    elif args.dynamodb_url is not None:
        raise SystemExit("--dynamodb-url needs --emulator-url (where SQS and Secrets Manager are)")
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
        state_dir=args.state_dir,
        stack_name=args.stack_name,
        config_env=args.config_env,
        metrics_port=args.metrics_port,
        with_metrics=not args.no_metrics,
    )
    stack.start()
    try:
        print("Press Ctrl-C to stop.", flush=True)
        _wait_for_signal()
    finally:
        stack.stop()
        print("Ripple local stack stopped.", flush=True)
    return 0


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
    root = args.root_dir.resolve() if args.root_dir is not None else find_root()
    try:
        if hasattr(args, "run"):  # a command from ripple_local.commands
            return int(args.run(args, root))
        if args.command == "up":
            return _up(args, root)
        return _create_resources(args, root)
    except ToolMissing as error:  # not installed yet: one line saying what to run
        print(f"ripple_local: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
