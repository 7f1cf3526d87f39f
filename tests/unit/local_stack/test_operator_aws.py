"""The operator commands' AWS target, without AWS: physical names resolved from a
CloudFormation stack (botocore's Stubber for the exact calls, moto's CloudFormation for a
real stack built from template.yaml's tables), settings on AWS's own endpoints, and the
commands run in-process against moto, Redis reported unreachable."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from ripple.repositories.models import ALL_MODELS
from ripple_local.aws_target import AwsTargetError, describe_stack, open_session
from ripple_local.cfn import load_template
from ripple_local.cli import main
from ripple_local.operator_errors import one_line
from ripple_local.targets import NO_TUNNEL, aws_target, parse_redis_url

ROOT = Path(__file__).resolve().parents[3]
REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ripple/5f0e-11ef"
TABLES = {
    "UsersTable": "USERS_TABLE",
    "UsernamesTable": "USERNAMES_TABLE",
    "PostsTable": "POSTS_TABLE",
    "PostIdsTable": "POST_IDS_TABLE",
    "FollowsTable": "FOLLOWS_TABLE",
    "FollowersTable": "FOLLOWERS_TABLE",
    "FeedTable": "FEED_TABLE",
    "LikesTable": "LIKES_TABLE",
    "LikesByUserTable": "LIKES_BY_USER_TABLE",
    "RepostsTable": "REPOSTS_TABLE",
    "RepostsByUserTable": "REPOSTS_BY_USER_TABLE",
    "RefreshTokensTable": "REFRESH_TOKENS_TABLE",
    "FanoutJobsTable": "FANOUT_JOBS_TABLE",
    "BlocksTable": "BLOCKS_TABLE",
    "BlockedByTable": "BLOCKED_BY_TABLE",
    "NotificationsTable": "NOTIFICATIONS_TABLE",
}
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An AWS configuration of our own: profile ``ops`` (eu-west-1) and nothing else; no
    credentials from the environment or an instance."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text(f"[profile ops]\nregion = {REGION}\n")
    credentials.write_text("[ops]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # An emulator endpoint left in the shell must not be where the AWS target's calls go.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    return tmp_path


@pytest.fixture
def restore_models() -> Iterator[None]:
    """The AWS target binds the PynamoDB models to its tables and credentials; undo that."""
    fields = (
        "table_name",
        "region",
        "host",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "connect_timeout_seconds",
        "read_timeout_seconds",
        "max_retry_attempts",
    )
    saved = [(model, {name: getattr(model.Meta, name, None) for name in fields}) for model in ALL_MODELS]
    yield
    for model, values in saved:
        for name, value in values.items():
            setattr(model.Meta, name, value)
        model._connection = None


def cloudformation() -> Any:
    return boto3.client(
        "cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )


def summary(logical_id: str, resource_type: str, physical_id: str) -> dict[str, Any]:
    return {
        "LogicalResourceId": logical_id,
        "PhysicalResourceId": physical_id,
        "ResourceType": resource_type,
        "LastUpdatedTimestamp": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        "ResourceStatus": "CREATE_COMPLETE",
    }


def described(status: str = "UPDATE_COMPLETE") -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "ripple",
                "StackId": STACK_ID,
                "CreationTime": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
                "StackStatus": status,
                "Parameters": [
                    {"ParameterKey": "Stage", "ParameterValue": "prod"},
                    {"ParameterKey": "BackfillPosts", "ParameterValue": "7"},
                    {"ParameterKey": "HighFollowerThreshold", "ParameterValue": "5000"},
                ],
            }
        ]
    }


# --------------------------------------------------------------------- Stubber: the exact calls


def test_physical_names_and_the_environment_come_from_the_stack(template: dict[str, Any]) -> None:
    cfn = cloudformation()
    tables = [summary(logical, "AWS::DynamoDB::Table", f"ripple-{logical}-1A2B3C") for logical in TABLES]
    others = [
        summary("ApiFunction", "AWS::Lambda::Function", "ripple-ApiFunction-9Z8Y7X"),
        summary(
            "JwtSecret", "AWS::SecretsManager::Secret", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:j"
        ),
        summary("RedisReplicationGroup", "AWS::ElastiCache::ReplicationGroup", "rip-redis"),
    ]
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", described(), {"StackName": "ripple"})
        stub.add_response(  # two pages: every resource is found, not only the first 100
            "list_stack_resources",
            {"StackResourceSummaries": tables[:6], "NextToken": "page-2"},
            {"StackName": "ripple"},
        )
        stub.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": tables[6:] + others},
            {"StackName": "ripple", "NextToken": "page-2"},
        )
        deployed = describe_stack(cfn, template, "ripple", REGION)
        stub.assert_no_pending_responses()

    assert deployed.tables == {logical: f"ripple-{logical}-1A2B3C" for logical in TABLES}
    for logical, variable in TABLES.items():
        assert deployed.environment[variable] == f"ripple-{logical}-1A2B3C"
    assert deployed.environment["STAGE"] == "prod"
    assert deployed.environment["BACKFILL_POSTS"] == "7"  # the stack's value
    assert deployed.environment["HIGH_FOLLOWER_THRESHOLD"] == "5000"
    assert deployed.environment["FEED_CACHE_MAX_ITEMS"] == "800"  # the template's default
    assert deployed.environment["JWT_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    # The ElastiCache endpoint is a GetAtt only ElastiCache knows: not guessed.
    assert set(deployed.unresolved) == {"REDIS_HOST", "REDIS_PORT"}
    assert not any(name.startswith("AWS_ENDPOINT_URL") for name in deployed.environment)


def test_a_missing_stack_is_one_line_that_says_what_to_pass(template: dict[str, Any]) -> None:
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        stub.add_client_error(
            "describe_stacks", "ValidationError", "Stack with id ripple-local does not exist", 400
        )
        with pytest.raises(AwsTargetError) as raised:
            describe_stack(cfn, template, "ripple-local", REGION)
    message = one_line(raised.value)
    assert message.startswith(f"no CloudFormation stack 'ripple-local' in {REGION}")
    assert "--stack-name" in message and "\n" not in message


def test_a_stack_without_the_templates_tables_is_refused(template: dict[str, Any]) -> None:
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", described(), {"StackName": "ripple"})
        stub.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": [summary("UsersTable", "AWS::DynamoDB::Table", "u")]},
            {"StackName": "ripple"},
        )
        with pytest.raises(AwsTargetError, match=r"has no UsernamesTable, PostsTable, .*not a Ripple stack"):
            describe_stack(cfn, template, "ripple", REGION)


def test_access_denied_is_told_in_one_line(template: dict[str, Any]) -> None:
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        stub.add_client_error("describe_stacks", "AccessDenied", "User: ops is not authorized", 403)
        with pytest.raises(ClientError) as raised:
            describe_stack(cfn, template, "ripple", REGION)
    assert one_line(raised.value) == "AWS DescribeStacks failed: AccessDenied: User: ops is not authorized"


# --------------------------------------------------------------------- sessions: profile, region, credentials


def test_a_session_needs_a_profile_a_region_and_credentials(aws_home: Path) -> None:
    session = open_session("ops", None)
    assert (session.region, session.profile, session.credentials.access_key) == (REGION, "ops", "testing")
    assert session.describe() == f"{REGION}, profile ops"
    with pytest.raises(AwsTargetError, match="no AWS profile 'nope'"):
        open_session("nope", REGION)
    with pytest.raises(AwsTargetError, match="no AWS region: pass --region"):
        open_session(None, None)
    with pytest.raises(AwsTargetError, match="no AWS credentials for the default credential chain"):
        open_session(None, REGION)


def test_redis_urls_name_host_port_and_tls() -> None:
    assert parse_redis_url("redis://127.0.0.1:6380") == ("127.0.0.1", 6380, False)
    assert parse_redis_url("rediss://localhost") == ("localhost", 6379, True)
    with pytest.raises(ValueError, match="--redis-url"):
        parse_redis_url("http://127.0.0.1:6379")


# --------------------------------------------------------------------- moto: a real CloudFormation stack


def deploy_tables(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, str]:
    """template.yaml's tables (and parameters) as a plain CloudFormation stack on moto;
    returns the physical table names CloudFormation made up."""
    plain = {
        "Parameters": template["Parameters"],
        "Resources": {
            logical: resource
            for logical, resource in template["Resources"].items()
            if resource["Type"] == "AWS::DynamoDB::Table"
        },
    }
    cfn = boto3.client(
        "cloudformation", region_name=REGION, config=Config(ignore_configured_endpoint_urls=True)
    )
    cfn.create_stack(
        StackName="ripple",
        TemplateBody=json.dumps(plain),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    resources = cfn.list_stack_resources(StackName="ripple")["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}


def test_a_deployed_stack_becomes_settings_on_awss_own_endpoints(
    template: dict[str, Any], aws_home: Path, restore_models: None
) -> None:
    with mock_aws():
        names = deploy_tables(template, {"BackfillPosts": "7"})
        target = aws_target(ROOT, "ripple", "ops", None, None)
        tunneled = aws_target(ROOT, "ripple", "ops", None, "rediss://127.0.0.1:6390")

    settings = target.settings
    assert names["FeedTable"].startswith("ripple-FeedTable-")
    assert settings.users_table == names["UsersTable"] and settings.feed_table == names["FeedTable"]
    assert settings.followers_table == names["FollowersTable"]
    assert settings.backfill_posts == 7 and settings.region == REGION
    # AWS's own endpoint, although AWS_ENDPOINT_URL(_DYNAMODB) point elsewhere in this shell
    assert settings.dynamodb_endpoint_url == f"https://dynamodb.{REGION}.amazonaws.com"
    assert target.label == f"AWS stack 'ripple' ({REGION}, profile ops)"
    assert target.cache_problem == NO_TUNNEL
    assert (tunneled.cache_problem, tunneled.settings.redis_host, tunneled.settings.redis_port) == (
        None,
        "127.0.0.1",
        6390,
    )
    assert tunneled.settings.redis_tls


def test_the_commands_run_against_a_deployed_stack(
    template: dict[str, Any],
    aws_home: Path,
    restore_models: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws = ["--aws-profile", "ops", "--stack-name", "ripple", "--root-dir", str(ROOT)]
    with mock_aws():
        deploy_tables(template, {})
        target = aws_target(ROOT, "ripple", "ops", None, None)
        from ripple.domain import User

        users = target.container().users
        users.create(User(user_id="01JDQ0000000000000000AAAAA", username="alice", created_at=1), "x")
        users.create(User(user_id="01JDQ0000000000000000BBBBB", username="bob", created_at=1), "x")
        target.container().follow_service.follow("01JDQ0000000000000000BBBBB", "01JDQ0000000000000000AAAAA")

        def run(*argv: str) -> tuple[int, str, str]:
            status = main([*argv, *aws])
            captured = capsys.readouterr()
            return status, captured.out, captured.err

        status, out, err = run("grant-role", "alice", "admin")
        assert status == 0, err
        assert out.strip() == (
            f"granted admin to alice (01JDQ0000000000000000AAAAA) on AWS stack 'ripple' "
            f"({REGION}, profile ops); roles now: admin"
        )
        assert users.get_consistent("01JDQ0000000000000000AAAAA").roles == ("admin",)

        status, out, err = run("show-user", "alice", "--json")
        assert status == 0, err
        shown = json.loads(out)
        assert shown["user"]["roles"] == ["admin"] and shown["ok"]
        assert {c["counter"]: c["rows"] for c in shown["counters"]} == {
            "follower_count": 1,
            "following_count": 0,
            "post_count": 0,
        }

        status, out, err = run("show-feed", "bob")
        assert status == 0, err
        assert f"cache: {NO_TUNNEL}; showing the table side only" in out.splitlines()

        status, out, err = run("check-convergence")
        assert status == 0, err
        assert out.splitlines()[0].endswith(f"cached feeds not checked: Redis is {NO_TUNNEL}")
        assert out.splitlines()[1] == "converged: 2 users checked, 0 differences in the feed tables"

        status, out, err = run("rebuild-feed", "01JDQ0000000000000000BBBBB")
        assert status == 1 and "cache NOT dropped: Redis is not reachable from here" in out

        for command, expected in (
            ("warm-feeds", "warm-feeds needs Redis, which is not reachable from here"),
            ("rebuild-cache", "rebuild-cache needs Redis"),
            ("replay-failures", "replay-failures works on the local stack only"),
        ):
            status, out, err = run(command)
            assert status == 1 and out == ""
            assert err.count("\n") == 1 and expected in err, err

        status, out, err = run("show-user", "carol")
        assert status == 1 and err == "ripple show-user: no user 'carol' (neither a user id nor a username)\n"
