"""Operator commands (``ripple COMMAND``, or ``python -m ripple_local COMMAND``).

``grant-role USER ROLE`` / ``revoke-role USER ROLE``  change a user's roles (USER: id or username)
``show-user USER``                 profile, roles, each counter next to the rows it counts
``show-feed USER [--limit N]``     the feed table's newest items next to the cached feed
``check-convergence [USER_ID ...]``  exit 1 unless every feed converged
``check-notifications [USER_ID ...]``  exit 1 unless every user's notifications match the follows and likes
``rebuild-feed USER_ID [...]``     make feed tables equal the truth
``rebuild-cache [USER_ID ...]``    drop cached feeds (none given: all)
``replay-failures``                re-drive the on-failure queue (local stack only)
``warm-feeds [USER_ID ...]``       warm cold feeds (these, or the most-following users')

**The local stack** (the default): they attach to the services ``up`` runs (found in the
``stack.json`` it writes into its state directory; ``--emulator-url``, ``--dynamodb-url``,
``--redis-url`` override, and without either the ports ``make up`` uses) and to its resources
by ``--stack-name``, through the same ``LocalStack.prepare()`` that ``up`` uses, so tables and
the functions' environment are the template's. An emulator without that stack's tables is an
error, not a new empty stack.

**A deployed stack**: ``--aws-profile PROFILE`` (or ``--aws`` for the default credential
chain, e.g. ``AWS_PROFILE``) with ``--stack-name`` and optionally ``--region``. Table names
come from CloudFormation (``ripple_local.aws_target``), calls go to AWS's own endpoints, and
Redis only through ``--redis-url`` (a tunnel: ElastiCache is inside the stack's VPC);
without it the cache side is reported unreachable. ``replay-failures`` is local only.

Every error is one line on stderr and exit status 1 (``--log-level DEBUG`` logs the traceback).

The ``ripple`` package is imported inside the commands, never at module level: the CLI
imports this module for every command, and ``up`` must import ripple only after it has put
the functions' environment in place (Powertools reads it at import).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ripple_local.aws import Endpoints, client
from ripple_local.operator_errors import OperatorError, one_line
from ripple_local.replay import FailureReplayer
from ripple_local.stack import LocalStack

if TYPE_CHECKING:
    from ripple_local.convergence import ConvergenceChecker, ConvergenceReport
    from ripple_local.targets import Target

__all__ = ["OperatorError", "attached_stack", "checker_for", "open_target", "register"]

logger = logging.getLogger(__name__)

DEFAULT_EMULATOR_URL = "http://127.0.0.1:4566"
DEFAULT_DYNAMODB_URL = "http://127.0.0.1:8000"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
MAX_FEED_LIMIT = 500
_PROFILE_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")

Command = Callable[[argparse.Namespace, Path], int]

_AWS_EXAMPLE = "--aws-profile prod --stack-name ripple --region eu-west-1"
_WIDTH = 88
_LOGS = (
    "stderr carries warnings and errors only (an error is one line); --log-level DEBUG shows the stack's log."
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the subcommands to ``python -m ripple_local``'s parser; each sets ``run``."""
    services = argparse.ArgumentParser(add_help=False)
    local = services.add_argument_group("the local stack (the default target)")
    local.add_argument(
        "--emulator-url", default=None, help=f"the running stack's emulator (default {DEFAULT_EMULATOR_URL})"
    )
    local.add_argument(
        "--dynamodb-url",
        default=None,
        help=f"the running stack's DynamoDB (default {DEFAULT_DYNAMODB_URL}, or --emulator-url if given)",
    )
    local.add_argument("--state-dir", type=Path, default=None, help="as for `up` (default: <root>/.local)")
    deployed = services.add_argument_group(
        "a deployed stack on AWS",
        "--stack-name is then the CloudFormation stack's name (`sam deploy`'s stack_name, e.g. ripple)",
    )
    deployed.add_argument(
        "--aws-profile",
        metavar="PROFILE",
        default=None,
        help="act on the deployed stack --stack-name, with this AWS profile's credentials",
    )
    deployed.add_argument(
        "--aws",
        action="store_true",
        help="act on the deployed stack --stack-name, with the default AWS credentials "
        "(AWS_PROFILE, AWS_ACCESS_KEY_ID ..., SSO, an instance role)",
    )
    deployed.add_argument(
        "--region", default=None, help="the deployed stack's region (default: the profile's)"
    )
    services.add_argument(
        "--redis-url",
        default=None,
        help=f"the stack's Redis: locally the running one's (default {DEFAULT_REDIS_URL}); on AWS "
        "ElastiCache through a tunnel (rediss://PRIMARY_ENDPOINT:6379, its name pointed at the "
        "tunnel, for TLS), else the cache is reported unreachable",
    )
    parents = [common, services]

    def add(
        name: str, summary: str, run: Command, examples: list[str], where: str
    ) -> argparse.ArgumentParser:
        epilog = "\n".join(
            [
                "examples:",
                *(f"  ripple {name} {example}".rstrip() for example in examples),
                "",
                textwrap.fill(where, width=_WIDTH),
                textwrap.fill(_LOGS, width=_WIDTH),
            ]
        )
        parser: argparse.ArgumentParser = commands.add_parser(
            name,
            parents=parents,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(run=_guarded(run))
        return parser

    for name, grant in (("grant-role", True), ("revoke-role", False)):
        verb = "grant a role to" if grant else "revoke a role from"
        roles = add(
            name,
            f"{verb} a user and print their roles after the change",
            functools.partial(_change_role, grant=grant),
            ["alice admin", f"01JDQ0000000000000000AAAAA admin {_AWS_EXAMPLE}"],
            "Works on the local stack and on AWS (DynamoDB only). Known roles: admin. "
            "Exit 1: no such user, or an unknown role.",
        )
        roles.add_argument("user", metavar="USER", help="user id or username")
        roles.add_argument("role", metavar="ROLE", help="a known role: admin")

    show_user = add(
        "show-user",
        "show a user's profile, roles, and each counter next to the rows it counts",
        _show_user,
        ["alice", f"alice --json {_AWS_EXAMPLE}"],
        "Works on the local stack and on AWS (DynamoDB only). Exit 1 when a counter differs "
        "from its rows (follower_count: Followers, following_count: Follows, post_count: Posts).",
    )
    show_user.add_argument("user", metavar="USER", help="user id or username")
    show_user.add_argument("--json", action="store_true", help="print the result as JSON")

    show_feed = add(
        "show-feed",
        "show a home feed: the feed table's newest items next to the cached feed in Redis",
        _show_feed,
        ["alice --limit 10", f"alice {_AWS_EXAMPLE} --redis-url rediss://PRIMARY_ENDPOINT:6379"],
        "Works on the local stack and on AWS; on AWS the cache side needs --redis-url (a tunnel "
        "into the VPC), otherwise it says so and shows the table side. Exit 1 when table and "
        "cache differ in the rows shown.",
    )
    show_feed.add_argument("user", metavar="USER", help="user id or username")
    show_feed.add_argument("--limit", type=int, default=20, help="how many newest items (default 20)")
    show_feed.add_argument("--json", action="store_true", help="print the result as JSON")

    check = add(
        "check-convergence",
        "compare home feeds (table and Redis) with the truth",
        _check_convergence,
        ["", "01JDQ0000000000000000AAAAA --json", _AWS_EXAMPLE],
        "Works on the local stack and on AWS; on AWS without --redis-url only the feed tables "
        "are judged (it says so). Exit 1 unless every feed matches.",
    )
    check.add_argument("user_ids", nargs="*", metavar="USER_ID", help="readers to check (default: all users)")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")

    notifications = add(
        "check-notifications",
        "compare notification groups with the follows and likes they come from",
        _check_notifications,
        ["", "01JDQ0000000000000000AAAAA --json", _AWS_EXAMPLE],
        "DynamoDB only, on the local stack and on AWS. Reports memberships missing or extra and "
        "groups whose count, actors or time disagree with their memberships; likes and follows "
        "from before notifications were deployed show as missing. Exit 1 unless all match.",
    )
    notifications.add_argument(
        "user_ids", nargs="*", metavar="USER_ID", help="recipients to check (default: all users)"
    )
    notifications.add_argument("--json", action="store_true", help="print the full report as JSON")

    feed = add(
        "rebuild-feed",
        "rewrite readers' feed tables from the truth and drop their cached copies",
        _rebuild_feed,
        ["01JDQ0000000000000000AAAAA", f"01JDQ0000000000000000AAAAA {_AWS_EXAMPLE}"],
        "Works on the local stack and on AWS; on AWS without --redis-url the table is rewritten "
        "but the cached copy cannot be dropped (exit 1 says so; it expires when idle).",
    )
    feed.add_argument("user_ids", nargs="+", metavar="USER_ID")

    cache = add(
        "rebuild-cache",
        "drop cached feeds so the next reads rebuild them",
        _rebuild_cache,
        ["", "01JDQ0000000000000000AAAAA --posts"],
        "Needs Redis: the local stack's, or on AWS --redis-url through a tunnel.",
    )
    cache.add_argument("user_ids", nargs="*", metavar="USER_ID", help="readers (default: all users)")
    cache.add_argument("--posts", action="store_true", help="drop the cached bodies of their posts too")

    add(
        "replay-failures",
        "re-drive stream batches parked on the on-failure queue",
        _replay_failures,
        [""],
        "The local stack only: it re-reads the local failure queue and runs the handlers in this "
        "process. On AWS, repair what the parked records name with rebuild-feed.",
    )

    warm = add(
        "warm-feeds",
        "warm cold cached feeds: these readers', or those of the users who follow the most accounts",
        _warm_feeds,
        ["", "--top 20", "01JDQ0000000000000000AAAAA"],
        "Needs Redis: the local stack's, or on AWS --redis-url through a tunnel.",
    )
    warm.add_argument(
        "user_ids",
        nargs="*",
        metavar="USER_ID",
        help="readers (default: the --top users following the most accounts)",
    )
    warm.add_argument(
        "--top", type=int, default=100, help="how many users, when no USER_ID is given (default 100)"
    )


# --------------------------------------------------------------------- targets


def resolve_services(args: argparse.Namespace, root: Path) -> tuple[Endpoints, str]:
    """The running stack's endpoints and Redis URL: the flags, else what ``up`` recorded in its
    state directory, else the ports ``make up`` uses."""
    state_dir = (args.state_dir if args.state_dir is not None else root / ".local").resolve()
    recorded = LocalStack.read_connection_file(state_dir) or {}
    if args.state_dir is not None and not recorded and args.emulator_url is None:
        # A named state directory without a running stack's record is a typo or the wrong
        # directory: the default ports could be another stack's.
        raise OperatorError(f"no running stack recorded in {state_dir} (stack.json); is `up` running there?")
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
        # Every page: ListTables answers at most 100 names, and an emulator (or an account)
        # holding several stacks of 14 tables has more.
        pages = client("dynamodb", endpoints).get_paginator("list_tables").paginate()
        tables = [name for page in pages for name in page.get("TableNames", [])]
    except (BotoCoreError, ClientError) as error:
        raise OperatorError(
            f"no DynamoDB answers at {endpoints.dynamodb} ({one_line(error)}); is the stack up?"
        ) from error
    if not any(name.startswith(f"{stack_name}-") for name in tables):
        raise OperatorError(
            f"no stack {stack_name!r} on {endpoints.dynamodb} (no tables named {stack_name}-*); "
            "is `python -m ripple_local up` running, with these --dynamodb-url / --stack-name?"
        )


@contextmanager
def attached_stack(args: argparse.Namespace, root: Path) -> Iterator[LocalStack]:
    """The running stack's resources and environment (in os.environ, for handlers).

    The attached LocalStack starts nothing, so it gets a scratch state directory of its own:
    the running ``up``'s (``--state-dir``, read above for its endpoints) is its alone - what
    is recorded there (stack.json, its processes) is never rewritten or reclaimed from here.
    """
    endpoints, redis_url = resolve_services(args, root)
    with _no_aws_profile(), tempfile.TemporaryDirectory(prefix="ripple-attach-") as scratch:
        _require_stack(endpoints, args.stack_name)
        stack = LocalStack(
            root,
            endpoints=endpoints,
            redis_url=redis_url,
            state_dir=scratch,
            stack_name=args.stack_name,
            config_env=args.config_env,
            with_api=False,
            with_runners=False,
            with_metrics=False,
        )
        try:
            stack.prepare()
        except RuntimeError as error:  # e.g. "no emulator answers at ..." (SQS, Secrets Manager)
            raise OperatorError(f"{error}; is the stack up?") from error
        try:
            yield stack
        finally:
            stack.stop()  # restores the environment; services it did not start keep running


@contextmanager
def _no_aws_profile() -> Iterator[None]:
    """The local stack never uses a real AWS profile (as in ``up``): one named in the shell,
    perhaps for --aws, must not stop the emulators' clients (a missing profile would)."""
    saved = {name: os.environ.pop(name) for name in _PROFILE_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _wants_aws(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "aws", False) or getattr(args, "aws_profile", None))


@contextmanager
def open_target(args: argparse.Namespace, root: Path) -> Iterator[Target]:
    """The stack the command acts on: the local one (attached as ``attached_stack`` does), or
    with ``--aws-profile`` / ``--aws`` the deployed one named by ``--stack-name``.

    ``ripple`` is imported only here, locally once the functions' environment is in place
    (Powertools reads it at import); commands import it inside this block.
    """
    if _wants_aws(args):
        for flag in ("emulator_url", "dynamodb_url", "state_dir"):
            if getattr(args, flag) is not None:
                option = "--" + flag.replace("_", "-")
                raise OperatorError(f"{option} is for the local stack; a deployed stack is reached on AWS")
        from ripple_local.targets import aws_target

        yield aws_target(root, args.stack_name, args.aws_profile, args.region, args.redis_url)
        return
    if args.region is not None:
        raise OperatorError("--region is for a deployed stack: add --aws-profile PROFILE (or --aws)")
    with attached_stack(args, root) as stack:
        from ripple_local.targets import local_target

        yield local_target(stack)


def checker_for(stack: LocalStack) -> ConvergenceChecker:
    """A checker on its own container, built from the stack's environment."""
    from ripple_local.targets import local_target

    return local_target(stack).checker()


def _guarded(run: Command) -> Command:
    """Run a command so that any failure is one line on stderr and exit status 1."""

    @functools.wraps(run)
    def guarded(args: argparse.Namespace, root: Path) -> int:
        root_logger = logging.getLogger()
        level = root_logger.level
        if str(args.log_level).upper() == "INFO":  # the default: results on stdout, not the stack's log
            root_logger.setLevel(logging.WARNING)
        try:
            return run(args, root)
        except KeyboardInterrupt:
            _error(args, "interrupted")
            return 130
        except Exception as error:
            logger.debug("%s failed", args.command, exc_info=True)
            _error(args, one_line(error))
            return 1
        finally:
            root_logger.setLevel(level)

    return guarded


def _error(args: argparse.Namespace, message: str) -> None:
    print(f"ripple {args.command}: {message}", file=sys.stderr, flush=True)


def _say(lines: list[str] | str) -> None:
    print(lines if isinstance(lines, str) else "\n".join(lines), flush=True)


# --------------------------------------------------------------------- users and feeds


def _change_role(args: argparse.Namespace, root: Path, *, grant: bool) -> int:
    with open_target(args, root) as target:
        from ripple_local.inspection import change_role, find_user

        users = target.container().users
        change = change_role(users, find_user(users, args.user), args.role, grant=grant)
    _say(change.lines(target.label))
    return 0


def _show_user(args: argparse.Namespace, root: Path) -> int:
    with open_target(args, root) as target:
        from ripple_local.feed_scan import FeedScanRepository
        from ripple_local.inspection import find_user, inspect_user

        users = target.container().users
        view = inspect_user(users, FeedScanRepository(), find_user(users, args.user))
    _say(
        json.dumps({"target": target.label, **view.to_dict()}, indent=2)
        if args.json
        else view.lines(target.label)
    )
    return 0 if view.ok else 1


def _show_feed(args: argparse.Namespace, root: Path) -> int:
    if not 1 <= args.limit <= MAX_FEED_LIMIT:
        raise OperatorError(f"--limit must be 1-{MAX_FEED_LIMIT}, not {args.limit}")
    with open_target(args, root) as target:
        from ripple_local.feed_scan import FeedScanRepository
        from ripple_local.inspection import find_user, inspect_feed

        container = target.container()
        user = find_user(container.users, args.user)
        view = inspect_feed(container, FeedScanRepository(), user, args.limit, target.cache_problem)
    _say(
        json.dumps({"target": target.label, **view.to_dict()}, indent=2)
        if args.json
        else view.lines(target.label)
    )
    return 1 if view.differences else 0


# --------------------------------------------------------------------- check and repair


def _check_convergence(args: argparse.Namespace, root: Path) -> int:
    with open_target(args, root) as target:
        report = target.checker().check(args.user_ids or None)
    if target.cache_problem is None:
        _say(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
        return 0 if report.ok else 1
    return _report_tables_only(report, target, as_json=args.json)


def _check_notifications(args: argparse.Namespace, root: Path) -> int:
    with open_target(args, root) as target:
        from ripple_local.notification_check import check_notifications

        target.container()  # binds the models to this target's tables
        report = check_notifications(args.user_ids or None)
    _say(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


def _report_tables_only(report: ConvergenceReport, target: Target, *, as_json: bool) -> int:
    """Judge the feed tables alone: Redis cannot be read from here (a deployed stack without
    a tunnel), and a cache nobody could read is neither right nor wrong."""
    diverged = [u for u in report.users if not (u.exists and u.table_ok)]
    note = f"cached feeds not checked: Redis is {target.cache_problem}"
    if as_json:
        document = {**report.to_dict(), "ok": not diverged, "cache_checked": False, "note": note}
        _say(json.dumps(document, indent=2))
        return 0 if not diverged else 1
    lines = [f"on {target.label}; {note}"]
    if not diverged:
        lines.append(f"converged: {len(report.users)} users checked, 0 differences in the feed tables")
    else:
        differences = sum(u.table_differences + (not u.exists) for u in diverged)
        lines.append(
            f"NOT converged: {len(diverged)} of {len(report.users)} users differ "
            f"({differences} differences in the feed tables)"
        )
        lines += [f"  {u.describe()}" for u in diverged]
    _say(lines)
    return 0 if not diverged else 1


def _rebuild_feed(args: argparse.Namespace, root: Path) -> int:
    status = 0
    with open_target(args, root) as target:
        checker = target.checker()
        if target.is_aws:
            _say(f"on {target.label}")
        for user_id in args.user_ids:
            repair = checker.rebuild_feed(user_id)
            if repair.cache_dropped:
                cache = "cached feed dropped"
            elif target.cache_problem is not None:
                cache = f"cache NOT dropped: Redis is {target.cache_problem}; it expires when idle"
            else:
                cache = "Redis unreachable: cache NOT dropped"
            _say(f"{user_id}: wrote {repair.written}, deleted {repair.deleted}; {cache}")
            status |= 0 if repair.cache_dropped else 1
    return status


def _rebuild_cache(args: argparse.Namespace, root: Path) -> int:
    with open_target(args, root) as target:
        from ripple.cache.errors import CacheError

        _require_redis(target, "rebuild-cache")
        try:
            repair = target.checker().rebuild_cache(args.user_ids or None, posts=args.posts)
        except CacheError as exc:
            raise OperatorError(f"Redis unreachable at {target.redis_url}: {exc}") from exc
    bodies = f" and {repair.posts} cached post bodies" if args.posts else ""
    _say(f"dropped {repair.feeds} cached feeds{bodies}; the next reads rebuild them")
    return 0


def _replay_failures(args: argparse.Namespace, root: Path) -> int:
    if _wants_aws(args):
        raise OperatorError(
            "replay-failures works on the local stack only (it re-drives the local failure queue "
            "through the handlers in this process); on AWS, repair what the parked records name "
            "with rebuild-feed"
        )
    with attached_stack(args, root) as stack:
        results = FailureReplayer.for_stack(stack).replay()
    for result in results:
        _say(result.describe())
    replayed = sum(r.replayed for r in results)
    _say(f"{replayed} replayed, {len(results) - replayed} kept")
    return 0 if replayed == len(results) else 1


def _warm_feeds(args: argparse.Namespace, root: Path) -> int:
    with open_target(args, root) as target:
        from ripple.cache.errors import CacheError
        from ripple_local.feed_scan import FeedScanRepository
        from ripple_local.warming import warm_feeds

        _require_redis(target, "warm-feeds")
        container = target.container()
        try:
            warmed = warm_feeds(
                container.feed_reader, container.feed_cache, FeedScanRepository(), args.user_ids, args.top
            )
        except CacheError as exc:
            raise OperatorError(f"Redis unreachable at {target.redis_url}: {exc}") from exc
    _say(f"warmed {len(warmed)} cold feeds")
    return 0


def _require_redis(target: Target, command: str) -> None:
    if target.cache_problem is not None:
        raise OperatorError(f"{command} needs Redis, which is {target.cache_problem}")
