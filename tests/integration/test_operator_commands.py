"""The operator commands an operator runs against the local stack, as separate processes:
grant-role / revoke-role, show-user, show-feed, the existing check/rebuild/warm commands
through the same target, and every error as one line on stderr with a non-zero exit.

The session's stack (DynamoDB Local, moto, a real redis-server) holds the data; the
in-process container writes it and damages it where a test needs a difference to show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from ripple.cache.feed_cache import SENTINEL, FeedRef, feed_key
from ripple.container import Container
from ripple.domain import User
from ripple.ids import new_ulid
from ripple_local.aws import client
from ripple_local.processes import free_port
from ripple_local.stack import LocalStack
from tests.integration.support import TEST_FEED_CACHE_MAX_ITEMS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ripple(stack: LocalStack, redis_server: str, tmp_path: Path) -> Run:
    """``ripple ARGS`` (``python -m ripple_local``) against the session's stack; ``local=False``
    leaves the target flags to ARGS, ``env`` changes the environment (None removes)."""

    def run(
        *args: str, env: dict[str, str | None] | None = None, local: bool = True
    ) -> subprocess.CompletedProcess[str]:
        assert stack.endpoints is not None
        target = [
            "--emulator-url", stack.endpoints.default,
            "--dynamodb-url", stack.endpoints.dynamodb,
            "--redis-url", redis_server,
            "--stack-name", stack.stack_name,
            "--state-dir", str(tmp_path / "cli-state"),
        ] if local else []  # fmt: skip
        argv = [sys.executable, "-m", "ripple_local", *args, *target]
        changed: dict[str, str | None] = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "layers/ripple"), str(ROOT / "infra/local")]),
            **(env or {}),
        }
        environment = {name: value for name, value in changed.items() if value is not None}
        return subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)

    return run


def one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The command failed with exactly one line on stderr (no traceback) naming ``expected``."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def new_user(container: Container, prefix: str = "op") -> User:
    user = User(
        user_id=new_ulid(), username=f"{prefix}{uuid.uuid4().hex[:10]}", created_at=int(time.time() * 1000)
    )
    container.users.create(user, "x")
    return user


def feed_members(redis_url: str, user_id: str) -> list[str]:
    return [str(m) for m in redis.Redis.from_url(redis_url, decode_responses=True).zrevrangebylex(
        feed_key(user_id), "+", "-"
    )]  # fmt: skip


# --------------------------------------------------------------------- roles


def test_grant_and_revoke_the_admin_role_by_username_or_id(container: Container, ripple: Run) -> None:
    user = new_user(container)

    granted = ripple("grant-role", user.username.upper(), "admin")  # usernames are case-folded
    assert granted.returncode == 0, granted.stderr
    assert f"granted admin to {user.username} ({user.user_id})" in granted.stdout
    assert "roles now: admin" in granted.stdout
    assert container.users.get_consistent(user.user_id).roles == ("admin",)

    again = ripple("grant-role", user.user_id, "admin")
    assert again.returncode == 0 and "already has admin" in again.stdout and "roles: admin" in again.stdout

    # A profile named in the shell (for --aws) does not disturb the local target, as in `up`
    shown = ripple("show-user", user.username, env={"AWS_PROFILE": "no-such-profile"})
    assert shown.returncode == 0 and "roles         admin" in shown.stdout, shown.stderr

    revoked = ripple("revoke-role", user.user_id, "admin")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked admin from" in revoked.stdout and "roles now: (none)" in revoked.stdout
    assert container.users.get_consistent(user.user_id).roles == ()


def test_roles_are_validated_and_unknown_users_are_one_line(container: Container, ripple: Run) -> None:
    user = new_user(container)
    one_line_error(ripple("grant-role", user.username, "moderator"), "unknown role 'moderator'", "admin")
    one_line_error(ripple("grant-role", "nobody_like_this", "admin"), "no user 'nobody_like_this'")
    one_line_error(ripple("revoke-role", new_ulid(), "admin"), "no user")
    one_line_error(ripple("show-user", "nobody_like_this"), "no user 'nobody_like_this'")
    one_line_error(ripple("show-feed", "nobody_like_this"), "no user 'nobody_like_this'")

    # A role the code does not know, written behind the tool's back: granting refuses to keep
    # it, revoking removes it.
    container.users.set_roles(user.user_id, ["superuser"])
    one_line_error(ripple("grant-role", user.username, "admin"), "superuser", "revoke them first")
    cleaned = ripple("revoke-role", user.username, "superuser")
    assert cleaned.returncode == 0 and "roles now: (none)" in cleaned.stdout
    assert ripple("grant-role", user.username, "admin").returncode == 0


# --------------------------------------------------------------------- show-user


def test_show_user_puts_each_counter_next_to_the_rows_it_counts(
    stack: LocalStack, container: Container, ripple: Run
) -> None:
    author, fan1, fan2 = new_user(container), new_user(container), new_user(container)
    container.follow_service.follow(fan1.user_id, author.user_id)
    container.follow_service.follow(fan2.user_id, author.user_id)
    container.follow_service.follow(author.user_id, fan1.user_id)
    container.post_service.create(author.user_id, "one")
    container.post_service.create(author.user_id, "two")
    container.users.set_roles(author.user_id, ["admin"])
    stack.drain()

    shown = ripple("show-user", author.username)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "roles         admin" in shown.stdout
    assert "every counter equals the rows it counts" in shown.stdout
    report = json.loads(ripple("show-user", author.user_id, "--json").stdout)
    assert report["ok"] and report["user"]["roles"] == ["admin"]
    assert {c["counter"]: (c["stored"], c["rows"], c["table"]) for c in report["counters"]} == {
        "follower_count": (2, 2, "Followers"),
        "following_count": (1, 1, "Follows"),
        "post_count": (2, 2, "Posts"),
    }

    # Given a counter that drifted from its rows (written behind the repositories' back)
    client("dynamodb", stack.endpoints).update_item(
        TableName=stack.table_name("UsersTable"),
        Key={"user_id": {"S": author.user_id}},
        UpdateExpression="ADD follower_count :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    drifted = ripple("show-user", author.username)
    assert drifted.returncode == 1
    [line] = [line for line in drifted.stdout.splitlines() if line.startswith("follower_count")]
    assert line.split()[:4] == ["follower_count", "3", "2", "Followers"] and "MISMATCH (+1)" in line
    assert "1 of 3 counters differ" in drifted.stdout
    assert not json.loads(ripple("show-user", author.username, "--json").stdout)["ok"]


# --------------------------------------------------------------------- show-feed


def test_show_feed_puts_the_table_next_to_the_cache(
    stack: LocalStack, container: Container, redis_server: str, ripple: Run
) -> None:
    author, reader = new_user(container), new_user(container)
    container.follow_service.follow(reader.user_id, author.user_id)
    stack.drain()
    posts = [container.post_service.create(author.user_id, f"p{i}").post_id for i in range(3)]
    stack.drain()

    cold = json.loads(ripple("show-feed", reader.username, "--json").stdout)
    assert cold["cache"]["state"] == "not cached"
    assert [r["post_id"] for r in cold["rows"]] == posts[::-1]
    assert all(r["in_table"] and not r["in_cache"] and r["note"] is None for r in cold["rows"])

    container.feed_reader.home(reader.user_id, 20)  # warms the cache: all of it, with the sentinel
    warm = ripple("show-feed", reader.username)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert "cache: 3 items + sentinel (complete" in warm.stdout
    assert "table and cache agree in the rows shown" in warm.stdout
    assert len(json.loads(ripple("show-feed", reader.user_id, "--limit", "2", "--json").stdout)["rows"]) == 2

    # Given the cache lost one item and holds one the table does not
    cache = redis.Redis.from_url(redis_server, decode_responses=True)
    cache.zrem(feed_key(reader.user_id), FeedRef(posts[1], author.user_id).member)
    ghost = new_ulid()
    cache.zadd(feed_key(reader.user_id), {FeedRef(ghost, author.user_id).member: 0})
    damaged = ripple("show-feed", reader.username)
    assert damaged.returncode == 1
    # columns: post_id, author, in the table, in the cache, what differs
    rows = {
        line.split()[0]: line.split(maxsplit=4)[1:]
        for line in damaged.stdout.splitlines()
        if line.startswith("  01")
    }
    assert rows[ghost] == [author.username, "no", "yes", "only in the cache"]
    assert rows[posts[1]] == [author.username, "yes", "no", "only in the table"]
    assert rows[posts[0]] == [author.username, "yes", "yes"]
    assert "2 of 4 rows differ between the table and the cache" in damaged.stdout


def test_show_feed_shows_a_reposted_item_at_its_repost(
    stack: LocalStack, container: Container, ripple: Run
) -> None:
    author, reposter, reader = new_user(container), new_user(container), new_user(container)
    container.follow_service.follow(reader.user_id, author.user_id)
    container.follow_service.follow(reader.user_id, reposter.user_id)
    old, newer = (container.post_service.create(author.user_id, t).post_id for t in ("old", "newer"))
    container.repost_service.repost(reposter.user_id, old)
    stack.drain()
    container.feed_reader.home(reader.user_id, 20)  # cached: the table and the cache side by side

    view = json.loads(ripple("show-feed", reader.username, "--json").stdout)
    assert [(r["post_id"], r.get("reposted_by")) for r in view["rows"]] == [
        (old, reposter.user_id),  # placed at the repost, above the newer post
        (newer, None),
    ]
    assert view["differences"] == 0 and all(r["in_table"] and r["in_cache"] for r in view["rows"])
    assert f"reposted by {reposter.username}" in ripple("show-feed", reader.username).stdout


def test_show_feed_tells_a_cached_prefix_and_pulled_authors_apart(
    stack: LocalStack, container: Container, redis_server: str, ripple: Run
) -> None:
    author, star, reader = new_user(container), new_user(container), new_user(container)
    container.follow_service.follow(reader.user_id, author.user_id)
    stack.drain()
    posts = [container.post_service.create(author.user_id, f"p{i}").post_id for i in range(14)]
    stack.drain()
    container.feed_reader.home(reader.user_id, 5)  # warms a prefix, trimmed to the cache's limit
    members = feed_members(redis_server, reader.user_id)
    assert SENTINEL not in members and len(members) == TEST_FEED_CACHE_MAX_ITEMS

    # ... and a high-follower author the reader follows (marked long ago: pulled, not pushed)
    container.users.mark_high_follower(star.user_id, 0)
    container.follow_service.follow(reader.user_id, star.user_id)
    stack.drain()
    pulled = container.post_service.create(star.user_id, "pulled at read time").post_id
    stack.drain()

    view = ripple("show-feed", reader.username, "--limit", "14", "--json")
    assert view.returncode == 0, view.stdout + view.stderr
    shown = json.loads(view.stdout)
    assert shown["cache"] == {"state": "partial", "size": TEST_FEED_CACHE_MAX_ITEMS, "error": None}
    notes = {r["post_id"]: r["note"] for r in shown["rows"]}
    assert [r["post_id"] for r in shown["rows"]] == posts[::-1]
    assert all(notes[p] is None for p in posts[-TEST_FEED_CACHE_MAX_ITEMS:])
    assert all(notes[p] == "below the cached prefix" for p in posts[:-TEST_FEED_CACHE_MAX_ITEMS])
    assert shown["differences"] == 0
    assert shown["pulled_authors"] == [star.user_id]
    assert shown["pulled"] == [{"post_id": pulled, "author_id": star.user_id}]
    text = ripple("show-feed", reader.username).stdout
    assert "no sentinel (a newest-first prefix" in text
    assert f"merged at read time from high-follower authors followed: {star.username}" in text
    assert f"  {pulled}  {star.username}" in text


def test_show_feed_shows_the_table_side_when_redis_cannot_be_reached(
    stack: LocalStack, container: Container, ripple: Run
) -> None:
    author, reader = new_user(container), new_user(container)
    container.follow_service.follow(reader.user_id, author.user_id)
    stack.drain()
    post = container.post_service.create(author.user_id, "kept in the table").post_id
    stack.drain()
    dead = f"redis://127.0.0.1:{free_port()}"
    assert stack.endpoints is not None
    result = ripple(
        "show-feed", reader.username,
        "--emulator-url", stack.endpoints.default, "--dynamodb-url", stack.endpoints.dynamodb,
        "--redis-url", dead, "--stack-name", stack.stack_name, local=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [cache_line] = [line for line in result.stdout.splitlines() if line.startswith("cache:")]
    assert "Redis unreachable" in cache_line and "showing the table side only" in cache_line
    assert post in result.stdout


# --------------------------------------------------------------------- existing commands, same target


def test_the_existing_commands_still_work_through_the_target(
    stack: LocalStack, container: Container, redis_server: str, ripple: Run
) -> None:
    author, reader = new_user(container), new_user(container)
    container.follow_service.follow(reader.user_id, author.user_id)
    stack.drain()
    container.post_service.create(author.user_id, "hello")
    stack.drain()
    container.feed_reader.home(reader.user_id, 20)

    checked = ripple("check-convergence", reader.user_id, author.user_id)
    assert checked.returncode == 0 and checked.stdout.startswith("converged: 2 users checked"), checked.stdout
    notified = ripple("check-notifications", reader.user_id, author.user_id)
    assert notified.returncode == 0, notified.stdout + notified.stderr
    assert notified.stdout.startswith("converged: 2 users' notifications checked"), notified.stdout
    rebuilt = ripple("rebuild-feed", reader.user_id)
    assert rebuilt.returncode == 0 and "wrote 0, deleted 0; cached feed dropped" in rebuilt.stdout
    dropped = ripple("rebuild-cache", reader.user_id)
    assert dropped.returncode == 0 and "dropped 1 cached feeds" in dropped.stdout
    warmed = ripple("warm-feeds", reader.user_id)
    assert warmed.returncode == 0 and "warmed 1 cold feeds" in warmed.stdout
    assert feed_members(redis_server, reader.user_id)[-1] == SENTINEL


# --------------------------------------------------------------------- errors: one line, non-zero


def test_no_stack_or_a_dead_emulator_is_one_line(stack: LocalStack, ripple: Run, tmp_path: Path) -> None:
    assert stack.endpoints is not None
    nothing = f"http://127.0.0.1:{free_port()}"
    state = ["--state-dir", str(tmp_path / "empty-state")]
    for command in ("show-user", "check-convergence", "grant-role", "replay-failures"):
        args = {"show-user": ["alice"], "grant-role": ["alice", "admin"]}.get(command, [])
        line = one_line_error(
            ripple(command, *args, "--emulator-url", nothing, "--dynamodb-url", nothing, *state, local=False),
            f"ripple {command}: no DynamoDB answers at {nothing}",
        )
        assert "is the stack up?" in line
    # A named state directory that holds no running stack's record: never the default ports.
    one_line_error(
        ripple("show-user", "alice", *state, local=False), "ripple show-user: no running stack recorded in"
    )
    one_line_error(
        ripple(
            "show-feed", "alice", "--emulator-url", stack.endpoints.default,
            "--dynamodb-url", stack.endpoints.dynamodb, "--stack-name", "no-such-stack", *state, local=False,
        ),
        "no stack 'no-such-stack'",
    )  # fmt: skip
    one_line_error(  # DynamoDB is up, the emulator for SQS and Secrets Manager is not
        ripple(
            "show-user", "alice", "--emulator-url", nothing, "--dynamodb-url", stack.endpoints.dynamodb,
            "--stack-name", stack.stack_name, *state, local=False,
        ),
        f"no emulator answers at {nothing}",
    )  # fmt: skip
    one_line_error(ripple("show-feed", "alice", "--limit", "0"), "--limit must be 1-500")
    one_line_error(ripple("show-user", "alice", "--region", "eu-west-1"), "--region is for a deployed stack")


def test_aws_target_errors_are_one_line(ripple: Run, tmp_path: Path) -> None:
    """No AWS is reachable here: what can be told before any call is, in one line."""
    empty = tmp_path / "aws-config"
    empty.write_text("")
    no_credentials: dict[str, str | None] = {
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
        **dict.fromkeys(
            (
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
            )
        ),
    }
    aws = ["--stack-name", "ripple", "--region", "eu-west-1"]
    one_line_error(
        ripple("show-user", "alice", "--aws", *aws, env=no_credentials, local=False), "no AWS credentials"
    )
    one_line_error(
        ripple(
            "grant-role", "alice", "admin", "--aws-profile", "nope", *aws, env=no_credentials, local=False
        ),
        "no AWS profile 'nope'",
    )
    one_line_error(
        ripple("replay-failures", "--aws", *aws, env=no_credentials, local=False), "local stack only"
    )
    one_line_error(
        ripple("show-user", "alice", "--aws", *aws, "--emulator-url", "http://x", local=False),
        "--emulator-url is for the local stack",
    )
