"""Single-item conditional writes (PutItem, UpdateItem, DeleteItem with a ``condition``)."""

from __future__ import annotations


def condition_failed(exc: Exception) -> bool:
    """True when a PynamoDB write error (PutError, UpdateError, DeleteError) is DynamoDB's
    ``ConditionalCheckFailedException``: the condition was false and nothing was written.
    Any other error (throttling past botocore's retries, validation) is False: re-raise it."""
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"
