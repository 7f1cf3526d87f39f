"""Request parsing at the HTTP boundary: JSON bodies and bearer tokens."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ripple.errors import AuthenticationError, PayloadTooLargeError, ValidationError

MAX_JSON_DEPTH = 8


class _RepeatedKey(ValueError):
    pass


class _NotJsonConstant(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity``: Python's json reads them, RFC 8259 has no such
    values (section 6), so no other JSON reader of the same body would."""
    raise _NotJsonConstant(name)


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
    """Decode a JSON request body (RFC 8259), refusing oversize (PayloadTooLargeError, 413),
    undecodable, non-standard (``NaN``, ``Infinity``) or too deeply nested input, numbers too long
    to convert, and objects that repeat a name (ValidationError, 400; the name is not echoed)."""
    if raw is None or raw == b"":
        raise ValidationError("request body is required (JSON)")
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"request body exceeds {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except _RepeatedKey as exc:
        raise ValidationError("a JSON object in the body repeats a name") from exc
    except _NotJsonConstant as exc:
        raise ValidationError(f"malformed JSON: {exc} is not a JSON value") from exc
    except UnicodeDecodeError as exc:
        raise ValidationError("request body must be UTF-8") from exc
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Unexpected UTF-8 BOM"):  # Python's message advises utf-8-sig
            raise ValidationError("malformed JSON: a byte order mark before the JSON") from exc
        raise ValidationError(f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise ValidationError("JSON is nested too deeply") from exc
    except ValueError as exc:  # an integer literal longer than Python converts (4,300 digits)
        raise ValidationError("malformed JSON: a number has too many digits") from exc
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
