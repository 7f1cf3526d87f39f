"""The one place that maps errors to HTTP: ``{"error": {"code", "message"}}`` everywhere."""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from ripple.errors import RateLimitedError, RippleError, ServiceUnavailableError

INTERNAL = (500, "internal_error", "an internal error occurred")

# Chalice's own error codes (405, 415, ...) translated to ours.
_CHALICE_CODES = {
    "MethodNotAllowedError": "method_not_allowed",
    "UnsupportedMediaType": "unsupported_media_type",
    "BadRequestError": "bad_request",
    "NotFoundError": "not_found",
    "InternalServerError": "internal_error",
    "BadRequest": "bad_request",
}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def status_and_body(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Domain errors keep their status and code; DynamoDB throttling after retries is a
    503 the client may retry; anything else is a 500 whose details stay in the logs.
    Returns (status, body, extra headers)."""
    if isinstance(exc, RateLimitedError | ServiceUnavailableError):
        return exc.status, error_body(exc.code, exc.message), {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, RippleError):
        return exc.status, error_body(exc.code, exc.message), {}
    if _is_throttling(exc):
        return status_and_body(ServiceUnavailableError("the service is busy, please retry"))
    status, code, message = INTERNAL
    return status, error_body(code, message), {}


def translate_chalice_body(body: Any) -> dict[str, Any] | None:
    """Chalice's ``{"Code", "Message"}`` errors in our shape, or None if not one."""
    if isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code = _CHALICE_CODES.get(str(body["Code"]), "error")
        message = str(body["Message"])
        if code == "unsupported_media_type":  # Chalice's message repeats the caller's header
            message = "unsupported media type: send application/json"
        return error_body(code, message)
    return None


# DynamoDB answers a client may simply retry later: throttling and server-side failures.
_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "InternalFailure",
}


def _is_throttling(exc: Exception) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "cause_response_code", None)
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = code or response.get("Error", {}).get("Code")
        status = (
            response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
        )
        if code in _RETRYABLE or (isinstance(status, int) and status >= 500):
            return True
        if isinstance(current, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
            return True
        current = current.__cause__ or current.__context__
    return False
