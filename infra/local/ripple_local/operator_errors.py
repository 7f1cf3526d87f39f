"""Errors of the operator commands, and how any error is told in one line.

No ``ripple`` import here: ``ripple_local.commands`` uses this at import time.
"""

from __future__ import annotations

from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

__all__ = ["OperatorError", "one_line"]

# A message is for a terminal line: longer ones (a botocore dump) are cut here.
MAX_MESSAGE = 400


class OperatorError(Exception):
    """A command cannot do what was asked; the message says why (and what to do) in one line."""


def one_line(error: BaseException) -> str:
    """``error`` as one line: the message of errors the commands expect, the type too otherwise."""
    if isinstance(error, NoCredentialsError):
        text = "no AWS credentials (pass --aws-profile, or run `aws configure` / `aws sso login`)"
    elif isinstance(error, NoRegionError):
        text = "no AWS region: pass --region"
    elif isinstance(error, ClientError):
        details = error.response.get("Error", {})
        operation = getattr(error, "operation_name", "") or "the call"
        text = f"AWS {operation} failed: {details.get('Code', '?')}: {details.get('Message', '')}"
    elif isinstance(error, OperatorError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
