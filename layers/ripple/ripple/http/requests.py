"""Request parsing at the HTTP boundary: JSON bodies and bearer tokens."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ripple.errors import AuthenticationError, PayloadTooLargeError, ValidationError

MAX_JSON_DEPTH = 8


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose names are unique. RFC 8259 4: with repeated names "the behavior of
    software that receives such an object is unpredictable" - parsers keep the first or the
    last, so two readers of one body could disagree (``{"password": a, "password": b}``)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _RepeatedKey
        obj[key] = value
    return obj


def parse_json_body(raw: bytes | None, max_bytes: int) -> Any:
    """Decode a JSON request body, refusing oversize, undecodable or too deeply nested input,
    and objects that repeat a name (ValidationError, 400; the name is not echoed)."""
    if raw is None or raw == b"":
        raise ValidationError("request body is required (JSON)")
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"request body exceeds {max_bytes} bytes")
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise ValidationError("a JSON object in the body repeats a name") from exc
    except UnicodeDecodeError as exc:
        raise ValidationError("request body must be UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise ValidationError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise ValidationError("JSON is nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer literal longer than Python will convert
        raise ValidationError(f"malformed JSON: {exc}") from exc
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValidationError("JSON is nested too deeply")
    return value


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or 401."""
    value = headers.get("authorization") or headers.get("Authorization")
    if not value:
        raise AuthenticationError("missing Authorization header", code="missing_token")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization header must be 'Bearer <token>'", code="invalid_token")
    return token.strip()
