"""Operator commands against a *running* local stack: check convergence, repair, replay.

``python -m ripple_local check-convergence [USER_ID ...]``  exit 1 unless every feed converged
``python -m ripple_local rebuild-feed USER_ID [...]``        make feed tables equal the truth
``python -m ripple_local rebuild-cache [USER_ID ...]``       drop cached feeds (none given: all)
``python -m ripple_local replay-failures``                   re-drive the on-failure queue

They attach to the services ``up`` runs (found in the ``stack.json`` it writes into its state
directory; ``--emulator-url``, ``--dynamodb-url``, ``--redis-url`` override, and without
either the ports ``make up`` uses) and to its resources by ``--stack-name``, through the same
``LocalStack.prepare()`` that ``up`` uses, so tables and the functions' environment are the
template's. An emulator without that stack's tables is an error, not a new empty stack.

The ``ripple`` package is imported inside the commands, never at module level: the CLI
imports this module for every command, and ``up`` must import ripple only after it has put
the functions' environment in place (Powertools reads it at import).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ripple_local.aws import Endpoints, client
from ripple_local.replay import FailureReplayer
from ripple_local.stack import LocalStack

if TYPE_CHECKING:
    from ripple.services.convergence import ConvergenceChecker

__all__ = ["attached_stack", "checker_for", "register"]

DEFAULT_EMULATOR_URL = "http://127.0.0.1:4566"
DEFAULT_DYNAMODB_URL = "http://127.0.0.1:8000"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

Command = Callable[[argparse.Namespace, Path], int]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the subcommands to ``python -m ripple_local``'s parser; each sets ``run``."""
    services = argparse.ArgumentParser(add_help=False)
    services.add_argument(
        "--emulator-url", default=None, help=f"the running stack's emulator (default {DEFAULT_EMULATOR_URL})"
    )
    services.add_argument(
        "--dynamodb-url",
        default=None,
        help=f"the running stack's DynamoDB (default {DEFAULT_DYNAMODB_URL}, or --emulator-url if given)",
    )
    services.add_argument(
        "--redis-url", default=None, help=f"the running stack's Redis (default {DEFAULT_REDIS_URL})"
    )
    services.add_argument("--state-dir", type=Path, default=None, help="as for `up` (default: <root>/.local)")
    parents = [common, services]

    check = commands.add_parser(
        "check-convergence", parents=parents, help="compare home feeds (table and Redis) with the truth"
    )
    check.add_argument("user_ids", nargs="*", metavar="USER_ID", help="readers to check (default: all users)")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    check.set_defaults(run=_check_convergence)

    feed = commands.add_parser(
        "rebuild-feed", parents=parents, help="rewrite readers' feed tables from the truth; drop their cache"
    )
    feed.add_argument("user_ids", nargs="+", metavar="USER_ID")
    feed.set_defaults(run=_rebuild_feed)

    cache = commands.add_parser(
        "rebuild-cache", parents=parents, help="drop cached feeds so the next reads rebuild them"
    )
    cache.add_argument("user_ids", nargs="*", metavar="USER_ID", help="readers (default: all users)")
    cache.add_argument("--posts", action="store_true", help="drop the cached bodies of their posts too")
    cache.set_defaults(run=_rebuild_cache)

    replay = commands.add_parser(
        "replay-failures", parents=parents, help="re-drive stream batches parked on the on-failure queue"
    )
    replay.set_defaults(run=_replay_failures)

    warm = commands.add_parser(
        "warm-feeds", parents=parents, help="warm cold cached feeds: these readers', or the most-read ones"
    )
    warm.add_argument("user_ids", nargs="*", metavar="USER_ID", help="readers (default: the --top most read)")
    warm.add_argument("--top", type=int, default=100, help="how many of the most-read feeds (default 100)")
    warm.set_defaults(run=_warm_feeds)


def resolve_services(args: argparse.Namespace, root: Path) -> tuple[Endpoints, str]:
    """The running stack's endpoints and Redis URL: the flags, else what ``up`` recorded in its
    state directory, else the ports ``make up`` uses."""
    state_dir = args.state_dir if args.state_dir is not None else root / ".local"
    recorded = LocalStack.read_connection_file(state_dir) or {}
    endpoints = recorded.get("endpoints") or {}
    if args.emulator_url is not None:
        resolved = Endpoints.of(args.emulator_url, args.dynamodb_url)
    elif endpoints.get("default"):
        resolved = Endpoints.of(endpoints["default"], args.dynamodb_url or endpoints.get("dynamodb"))
    else:
        resolved = Endpoints.of(DEFAULT_EMULATOR_URL, args.dynamodb_url or DEFAULT_DYNAMODB_URL)
    redis_url = args.redis_url or recorded.get("redis_url") or DEFAULT_REDIS_URL
    return resolved, str(redis_url)


def _require_stack(endpoints: Endpoints, stack_name: str) -> None:
    """Refuse to run against an emulator that lacks the stack (prepare() would create it empty)."""
    try:
        tables = client("dynamodb", endpoints).list_tables().get("TableNames", [])
    except (BotoCoreError, ClientError) as error:
        raise SystemExit(
            f"no DynamoDB answers at {endpoints.dynamodb} ({error}); is the stack up?"
        ) from error
    if not any(name.startswith(f"{stack_name}-") for name in tables):
        raise SystemExit(
            f"no stack {stack_name!r} on {endpoints.dynamodb} (no tables named {stack_name}-*); "
            "is `python -m ripple_local up` running, with these --dynamodb-url / --stack-name?"
        )


@contextmanager
def attached_stack(args: argparse.Namespace, root: Path) -> Iterator[LocalStack]:
    """The running stack's resources and environment (in os.environ, for handlers)."""
    endpoints, redis_url = resolve_services(args, root)
    _require_stack(endpoints, args.stack_name)
    stack = LocalStack(
        root,
        endpoints=endpoints,
        redis_url=redis_url,
        state_dir=args.state_dir,
        stack_name=args.stack_name,
        config_env=args.config_env,
        with_api=False,
        with_runners=False,
        with_metrics=False,
    )
    stack.prepare()
    try:
        yield stack
    finally:
        stack.stop()  # restores the environment; services it did not start keep running


def checker_for(stack: LocalStack) -> ConvergenceChecker:
    """A checker on its own container, built from the stack's environment."""
    from ripple.config import Settings
    from ripple.container import Container
    from ripple.services.convergence import ConvergenceChecker

    return ConvergenceChecker.from_container(Container(Settings.from_env(stack.environment)))


def _check_convergence(args: argparse.Namespace, root: Path) -> int:
    with attached_stack(args, root) as stack:
        report = checker_for(stack).check(args.user_ids or None)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary(), flush=True)
    return 0 if report.ok else 1


def _rebuild_feed(args: argparse.Namespace, root: Path) -> int:
    status = 0
    with attached_stack(args, root) as stack:
        checker = checker_for(stack)
        for user_id in args.user_ids:
            repair = checker.rebuild_feed(user_id)
            cache = "cached feed dropped" if repair.cache_dropped else "Redis unreachable: cache NOT dropped"
            print(f"{user_id}: wrote {repair.written}, deleted {repair.deleted}; {cache}", flush=True)
            status |= 0 if repair.cache_dropped else 1
    return status


def _rebuild_cache(args: argparse.Namespace, root: Path) -> int:
    from ripple.cache.errors import CacheError

    with attached_stack(args, root) as stack:
        try:
            repair = checker_for(stack).rebuild_cache(args.user_ids or None, posts=args.posts)
        except CacheError as exc:
            print(f"Redis unreachable at {stack.redis_url}: {exc}", flush=True)
            return 1
    bodies = f" and {repair.posts} cached post bodies" if args.posts else ""
    print(f"dropped {repair.feeds} cached feeds{bodies}; the next reads rebuild them", flush=True)
    return 0


def _replay_failures(args: argparse.Namespace, root: Path) -> int:
    with attached_stack(args, root) as stack:
        results = FailureReplayer.for_stack(stack).replay()
    for result in results:
        print(result.describe(), flush=True)
    replayed = sum(r.replayed for r in results)
    print(f"{replayed} replayed, {len(results) - replayed} kept", flush=True)
    return 0 if replayed == len(results) else 1


def _warm_feeds(args: argparse.Namespace, root: Path) -> int:
    from ripple.config import Settings
    from ripple.container import Container

    with attached_stack(args, root) as stack:
        warmed = Container(Settings.from_env(stack.environment)).feed_warmer.warm(
            args.user_ids or None, args.top
        )
    print(f"warmed {len(warmed)} cold feeds", flush=True)
    return 0
