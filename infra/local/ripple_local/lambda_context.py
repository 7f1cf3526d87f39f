"""A Lambda-like context object for handlers invoked in-process by the local stack.

Handlers (and Powertools' logger, which copies the context into every log line) read
``function_name``, ``aws_request_id`` and the remaining time; giving them a faithful object
means local logs and timeout-aware code behave as in AWS.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ripple_local.functions import function_setting

__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT_S", "LambdaContext", "LambdaContextFactory"]

# SAM's defaults when neither the function nor Globals set them.
DEFAULT_TIMEOUT_S = 3
DEFAULT_MEMORY_MB = 128


@dataclass
class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before AWS would time this invocation out (never negative)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaContextFactory:
    """Makes a fresh context (new request id, full time budget) for each invocation."""

    def __init__(
        self,
        function_name: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_mb: int = DEFAULT_MEMORY_MB,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        self.function_name = function_name
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        # One "container" per factory: AWS names the stream after the execution environment.
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"

    @classmethod
    def from_template(
        cls,
        template: Mapping[str, Any],
        logical_id: str,
        stack_name: str,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> LambdaContextFactory:
        """A factory using the function's Timeout and MemorySize (or Globals', or SAM defaults)."""
        return cls(
            function_name=f"{stack_name}-{logical_id}",
            timeout_s=float(function_setting(template, logical_id, "Timeout", DEFAULT_TIMEOUT_S)),
            memory_mb=int(function_setting(template, logical_id, "MemorySize", DEFAULT_MEMORY_MB)),
            region=region,
            account_id=account_id,
        )

    def __call__(self) -> LambdaContext:
        """A context for one invocation starting now."""
        return LambdaContext(
            function_name=self.function_name,
            invoked_function_arn=self.function_arn,
            memory_limit_in_mb=self.memory_mb,
            timeout_s=self.timeout_s,
            log_stream_name=self.log_stream_name,
        )
