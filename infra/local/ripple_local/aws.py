"""boto3 clients aimed at the local emulator, with the dummy credentials it accepts.

Every piece of the local stack talks to the emulator the same way; building the clients in one
place keeps a stray real-AWS credential chain or region from sneaking in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

__all__ = ["DUMMY_CREDENTIAL", "LOCAL_REGION", "AwsClients", "client"]

LOCAL_REGION = "us-east-1"
# moto and LocalStack accept any credentials; "testing" is what moto's docs use.
DUMMY_CREDENTIAL = "testing"

# Local calls fail fast: a dead emulator should surface in seconds, not after botocore's
# default 60 s read timeout and several retries.
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})


def client(service: str, endpoint_url: str, region: str = LOCAL_REGION) -> Any:
    """A boto3 client for ``service`` on the emulator at ``endpoint_url``."""
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=DUMMY_CREDENTIAL,
        aws_secret_access_key=DUMMY_CREDENTIAL,
        config=_CLIENT_CONFIG,
    )


@dataclass(frozen=True)
class AwsClients:
    """The clients the local stack needs, all bound to one emulator."""

    endpoint_url: str
    region: str
    dynamodb: Any
    dynamodbstreams: Any
    sqs: Any
    secretsmanager: Any
    sts: Any

    @classmethod
    def for_endpoint(cls, endpoint_url: str, region: str = LOCAL_REGION) -> AwsClients:
        """Build every client for the emulator at ``endpoint_url``."""
        return cls(
            endpoint_url=endpoint_url,
            region=region,
            dynamodb=client("dynamodb", endpoint_url, region),
            dynamodbstreams=client("dynamodbstreams", endpoint_url, region),
            sqs=client("sqs", endpoint_url, region),
            secretsmanager=client("secretsmanager", endpoint_url, region),
            sts=client("sts", endpoint_url, region),
        )

    def account_id(self, default: str = "123456789012") -> str:
        """The emulator's account id (moto: 123456789012, LocalStack: 000000000000)."""
        try:
            return str(self.sts.get_caller_identity()["Account"])
        except Exception:  # an emulator without STS still has an account
            return default
