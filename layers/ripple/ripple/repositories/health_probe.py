"""The DynamoDB client readiness and deep checks use: data access, kept out of the service."""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.session import get_session

# A health check that waits longer than this for DynamoDB reports it down.
DYNAMODB_TIMEOUT_S = 1.0


def health_dynamodb_client(
    region: str, endpoint_url: str | None = None, timeout_s: float = DYNAMODB_TIMEOUT_S
) -> Any:
    """A DynamoDB client for probes: short timeouts and a single attempt, so a down or slow
    DynamoDB makes the check fail quickly instead of hanging in botocore's retries."""
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        # total_max_attempts: botocore reads "max_attempts" as retries (1 made it 2 attempts)
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    # botocore's own session, as PynamoDB's: boto3 would add its import to the cold start
    session = get_session()
    return session.create_client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=config)
