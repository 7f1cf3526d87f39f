"""boto3 clients aimed at the local emulators, with the dummy credentials they accept.

Every piece of the local stack talks to the emulators the same way; building the clients in one
place keeps a stray real-AWS credential chain or region from sneaking in.

The services can live on different emulators: by default DynamoDB and DynamoDB Streams are on
DynamoDB Local and SQS, Secrets Manager and STS on moto. :class:`Endpoints` says which URL
serves which service, and exports the same choice to the functions as the AWS SDKs'
service-specific variables (``AWS_ENDPOINT_URL_DYNAMODB`` ... falling back to
``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

__all__ = [
    "DUMMY_CREDENTIAL",
    "LOCAL_REGION",
    "SERVICE_ENDPOINT_VARIABLES",
    "AwsClients",
    "Endpoints",
    "client",
]

LOCAL_REGION = "us-east-1"
# moto, DynamoDB Local and LocalStack accept any credentials; "testing" is what moto's docs use.
DUMMY_CREDENTIAL = "testing"

# The services the local stack uses -> the SDKs' variable for that service's endpoint
# (AWS_ENDPOINT_URL_ + the service id in upper case, spaces as underscores).
SERVICE_ENDPOINT_VARIABLES = {
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
    "dynamodbstreams": "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "secretsmanager": "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "sts": "AWS_ENDPOINT_URL_STS",
}

# Local calls fail fast: a dead emulator should surface in seconds, not after botocore's
# default 60 s read timeout and several retries.
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})


@dataclass(frozen=True)
class Endpoints:
    """Which URL serves which AWS service: ``default`` for all but those in ``overrides``."""

    default: str
    overrides: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, default: str, dynamodb: str | None = None) -> Endpoints:
        """Everything on ``default``, except DynamoDB and its streams on ``dynamodb`` if given."""
        if dynamodb is None or dynamodb == default:
            return cls(default)
        return cls(default, {"dynamodb": dynamodb, "dynamodbstreams": dynamodb})

    def url(self, service: str) -> str:
        """The endpoint of a boto3 service name (``dynamodb``, ``sqs`` ...)."""
        return self.overrides.get(service, self.default)

    @property
    def dynamodb(self) -> str:
        """Where DynamoDB is served (DynamoDB Streams is always on the same engine here)."""
        return self.url("dynamodb")

    def environment(self) -> dict[str, str]:
        """``AWS_ENDPOINT_URL`` plus one service-specific variable per known service."""
        variables = {"AWS_ENDPOINT_URL": self.default}
        for service, variable in SERVICE_ENDPOINT_VARIABLES.items():
            variables[variable] = self.url(service)
        return variables

    def describe(self) -> str:
        """``dynamodb, dynamodbstreams -> URL; everything else -> URL`` for humans."""
        parts = [f"{service} -> {url}" for service, url in sorted(self.overrides.items())]
        return "; ".join([*parts, f"everything else -> {self.default}"])


def client(service: str, endpoint: str | Endpoints, region: str = LOCAL_REGION) -> Any:
    """A boto3 client for ``service`` on the emulator at ``endpoint`` (a URL, or Endpoints)."""
    url = endpoint.url(service) if isinstance(endpoint, Endpoints) else endpoint
    return boto3.session.Session().client(
        service,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=DUMMY_CREDENTIAL,
        aws_secret_access_key=DUMMY_CREDENTIAL,
        config=_CLIENT_CONFIG,
    )


def region_of(aws_client: Any) -> str | None:
    """The region a boto3 client was made for (None for a stand-in without one)."""
    return getattr(getattr(aws_client, "meta", None), "region_name", None) or None


@dataclass(frozen=True)
class AwsClients:
    """The clients the local stack needs, each bound to the emulator serving its service."""

    endpoints: Endpoints
    region: str
    dynamodb: Any
    dynamodbstreams: Any
    sqs: Any
    secretsmanager: Any
    sts: Any

    @classmethod
    def for_endpoints(cls, endpoints: str | Endpoints, region: str = LOCAL_REGION) -> AwsClients:
        """Build every client (a plain URL means one emulator for everything)."""
        resolved = endpoints if isinstance(endpoints, Endpoints) else Endpoints(endpoints)
        return cls(
            endpoints=resolved,
            region=region,
            dynamodb=client("dynamodb", resolved, region),
            dynamodbstreams=client("dynamodbstreams", resolved, region),
            sqs=client("sqs", resolved, region),
            secretsmanager=client("secretsmanager", resolved, region),
            sts=client("sts", resolved, region),
        )

    def account_id(self, default: str = "123456789012") -> str:
        """The emulator's account id (moto: 123456789012, LocalStack: 000000000000)."""
        try:
            return str(self.sts.get_caller_identity()["Account"])
        except Exception:  # an emulator without STS still has an account
            return default
