"""Opaque pagination cursors.

A cursor names the last item of the page the client saw; the next page starts strictly
after it. Because ids are unique and time-sorted, new posts arriving between two page
reads can neither duplicate nor skip items. Clients must treat cursors as opaque.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable

from ripple.errors import ValidationError
from ripple.ids import is_ulid


def encode_cursor(last_id: str) -> str:
    raw = json.dumps({"after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, is_valid: Callable[[str], bool] = is_ulid) -> str | None:
    """The id to continue after, or None for the first page. ``is_valid`` says what an id
    of this list looks like (a ULID unless the list is ordered by another key)."""
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        last_id = data["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValidationError("'cursor' is not a valid cursor") from exc
    if not isinstance(last_id, str) or not is_valid(last_id):
        raise ValidationError("'cursor' is not a valid cursor")
    return last_id
