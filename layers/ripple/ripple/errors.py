"""Domain errors. Each carries a stable machine-readable code and its HTTP status,
so one place (``ripple.http.errors``) can map any of them to the JSON error shape."""

from __future__ import annotations


class RippleError(Exception):
    """Base of every error that is the caller's fault or an expected condition."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ValidationError(RippleError):
    status = 400
    code = "validation_error"


class AuthenticationError(RippleError):
    status = 401
    code = "unauthorized"


class ForbiddenError(RippleError):
    status = 403
    code = "forbidden"


class NotFoundError(RippleError):
    status = 404
    code = "not_found"


class ConflictError(RippleError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(RippleError):
    status = 413
    code = "payload_too_large"


class RateLimitedError(RippleError):
    """Too many requests in the current window; ``retry_after`` seconds until it resets."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class ServiceUnavailableError(RippleError):
    """A dependency (DynamoDB) failed after retries and nothing was written: the client may
    try again after ``retry_after`` seconds (sent as ``Retry-After``)."""

    status = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
