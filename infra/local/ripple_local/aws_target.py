"""A deployed Ripple stack as the operator commands' target: names from CloudFormation.

``sam deploy`` lets CloudFormation name the tables (``ripple-UsersTable-1A2B3C...``), so the
operator commands ask CloudFormation: the stack's resources give each table's physical name,
its parameters the values the functions were configured with. Both are put through the
functions' ``Globals`` environment of template.yaml with the same :class:`Resolver` the local
stack uses, so the result is the environment the deployed functions see (table variables,
``BACKFILL_POSTS`` ...), minus what only other services know (the ElastiCache endpoint).

Calls go to AWS's own endpoints for the region: ``AWS_ENDPOINT_URL*`` variables or profile
settings that would send them to an emulator are ignored, and PynamoDB is given the regional
DynamoDB endpoint explicitly. Credentials come from the named profile (or the default chain),
never from ``os.environ`` edits. Needs ``cloudformation:DescribeStacks`` and
``cloudformation:ListStackResources`` besides the DynamoDB reads and writes a command makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

from ripple_local.cfn import CfnResolutionError, Resolver, pseudo_parameters, to_cfn_string
from ripple_local.operator_errors import OperatorError

__all__ = [
    "TABLE_TYPE",
    "AwsCredentials",
    "AwsSession",
    "AwsTargetError",
    "DeployedStack",
    "describe_stack",
    "open_session",
]

TABLE_TYPE = "AWS::DynamoDB::Table"

# Real AWS: no emulator endpoint from the environment or the profile, a few quick retries.
_AWS_CONFIG = Config(
    ignore_configured_endpoint_urls=True,
    connect_timeout=5,
    read_timeout=20,
    retries={"max_attempts": 3, "mode": "standard"},
)


class AwsTargetError(OperatorError):
    """The deployed stack cannot be reached or is not a Ripple stack (one line for humans)."""


@dataclass(frozen=True)
class AwsCredentials:
    """A snapshot of the profile's credentials, handed to PynamoDB's models explicitly."""

    access_key: str
    secret_key: str
    token: str | None = None


@dataclass(frozen=True)
class AwsSession:
    """A boto3 session for one profile and region, with its credentials resolved."""

    session: Any  # boto3.session.Session
    profile: str | None
    region: str
    credentials: AwsCredentials

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region, config=_AWS_CONFIG)

    def endpoint(self, service: str) -> str:
        """The AWS endpoint botocore resolves for ``service`` here (no overrides)."""
        return str(self.client(service).meta.endpoint_url)

    def describe(self) -> str:
        return f"{self.region}, profile {self.profile}" if self.profile else f"{self.region}"


def open_session(profile: str | None, region: str | None) -> AwsSession:
    """The operator's AWS session; AwsTargetError when the profile, region or credentials are
    missing (each a one-line reason saying what to do)."""
    try:
        session = boto3.session.Session(profile_name=profile or None, region_name=region or None)
    except ProfileNotFound as error:
        raise AwsTargetError(f"no AWS profile {profile!r} in ~/.aws/config or ~/.aws/credentials") from error
    resolved = session.region_name
    if not resolved:
        where = f"profile {profile!r}" if profile else "the AWS environment"
        raise AwsTargetError(f"no AWS region: pass --region (none is configured for {where})")
    who = f"profile {profile!r}" if profile else "the default credential chain"
    try:
        found = session.get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
    except (BotoCoreError, ClientError) as error:  # an expired SSO session, a failing process
        raise AwsTargetError(f"AWS credentials of {who} are not usable: {_one_line(error)}") from error
    if frozen is None or not frozen.access_key:
        raise AwsTargetError(
            f"no AWS credentials for {who} (run `aws configure` or `aws sso login`, or pass --aws-profile)"
        )
    return AwsSession(
        session=session,
        profile=profile or None,
        region=resolved,
        credentials=AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None),
    )


@dataclass(frozen=True)
class DeployedStack:
    """What CloudFormation knows about one deployed Ripple stack."""

    stack_name: str
    region: str
    status: str
    tables: dict[str, str]  # logical id -> physical table name
    parameters: dict[str, str]  # the template's parameters as deployed (defaults filled in)
    environment: dict[str, str]  # the functions' Globals environment, resolved
    unresolved: tuple[str, ...] = field(default=())  # variables CloudFormation alone cannot give


def describe_stack(
    cloudformation: Any, template: Mapping[str, Any], stack_name: str, region: str
) -> DeployedStack:
    """Resolve ``stack_name``'s tables and function environment through ``cloudformation``
    (a boto3 client). AwsTargetError if there is no such stack or it lacks a table of the
    template; other ClientErrors (access denied, throttling) propagate."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if _code(error) == "ValidationError" and "does not exist" in str(error):
            raise AwsTargetError(
                f"no CloudFormation stack {stack_name!r} in {region} (pass --stack-name: the "
                "stack_name `sam deploy` used, e.g. 'ripple' from samconfig.toml [default])"
            ) from error
        raise
    if not stacks:
        raise AwsTargetError(f"no CloudFormation stack {stack_name!r} in {region}")
    stack = stacks[0]
    status = str(stack.get("StackStatus", ""))
    if status.startswith("DELETE_"):
        raise AwsTargetError(f"CloudFormation stack {stack_name!r} in {region} is {status}")

    resources: dict[str, tuple[str, str]] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for summary in page.get("StackResourceSummaries", []):
            physical = summary.get("PhysicalResourceId")
            if physical:
                resources[summary["LogicalResourceId"]] = (summary["ResourceType"], physical)
    tables = {logical: physical for logical, (kind, physical) in resources.items() if kind == TABLE_TYPE}
    wanted = [
        logical
        for logical, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == TABLE_TYPE
    ]
    missing = [logical for logical in wanted if logical not in tables]
    if missing:
        raise AwsTargetError(
            f"stack {stack_name!r} in {region} has no {', '.join(missing)}: not a Ripple stack, "
            "or one deployed from another template.yaml"
        )

    parameters = _parameters(template, stack.get("Parameters") or [])
    account = _account_of(str(stack.get("StackId", "")))
    resolver = Resolver(
        parameters=parameters,
        refs={logical: physical for logical, (_, physical) in resources.items()},
        attributes={},
        pseudo=pseudo_parameters(region, account, stack_name),
    )
    environment: dict[str, str] = {}
    unresolved: list[str] = []
    for name, value in _global_variables(template).items():
        try:
            environment[name] = resolver.resolve_str(value)
        except CfnResolutionError:  # a GetAtt of ElastiCache: the Redis endpoint
            unresolved.append(name)
    return DeployedStack(
        stack_name=stack_name,
        region=region,
        status=status,
        tables=tables,
        parameters=parameters,
        environment=environment,
        unresolved=tuple(unresolved),
    )


def _parameters(template: Mapping[str, Any], deployed: list[dict[str, Any]]) -> dict[str, str]:
    """The template's defaults overlaid with the stack's values (NoEcho ones stay defaults)."""
    values: dict[str, str] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if isinstance(spec, Mapping) and "Default" in spec:
            values[name] = to_cfn_string(spec["Default"])
    for parameter in deployed:
        value = parameter.get("ResolvedValue", parameter.get("ParameterValue"))
        if value is not None and value != "****":
            values[str(parameter["ParameterKey"])] = str(value)
    return values


def _global_variables(template: Mapping[str, Any]) -> Mapping[str, Any]:
    function = (template.get("Globals") or {}).get("Function") or {}
    return (function.get("Environment") or {}).get("Variables") or {}


def _account_of(stack_id: str) -> str:
    """The account id inside a stack ARN (arn:aws:cloudformation:region:account:stack/...)."""
    parts = stack_id.split(":")
    return parts[4] if len(parts) > 5 and parts[4] else "000000000000"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
