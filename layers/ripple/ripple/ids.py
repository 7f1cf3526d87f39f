"""Time-sortable identifiers (ULIDs).

A ULID is 48 bits of milliseconds since the epoch followed by 80 random bits, written in
Crockford base32 (26 characters). Lexicographic order is creation order, which lets one
string serve as DynamoDB sort key, Redis sorted-set member and pagination cursor.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
ULID_LENGTH = 26


def new_ulid(now_ms: int | None = None) -> str:
    """A new ULID for the given (or current) millisecond."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(ULID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def ulid_timestamp_ms(ulid: str) -> int:
    """The creation time encoded in a ULID, in epoch milliseconds."""
    if not is_ulid(ulid):
        raise ValueError(f"not a ULID: {ulid!r}")
    value = 0
    for c in ulid[:10]:
        value = (value << 5) | _DECODE[c]
    return value


def is_ulid(value: str) -> bool:
    """True if ``value`` is a well-formed ULID (upper-case Crockford base32)."""
    return (
        isinstance(value, str)
        and len(value) == ULID_LENGTH
        and value[0] in "01234567"
        and all(c in _DECODE for c in value)
    )


def ulid_floor(ms: int) -> str:
    """The smallest ULID of millisecond ``ms``: every id created at or after ``ms`` sorts
    at or above it, every id created before sorts below it."""
    value = ms << 80
    chars = []
    for _ in range(ULID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))
