"""Input validation for request bodies and query parameters.

Each function returns clean values or raises :class:`ValidationError` with a message a
client developer can act on. Unknown fields are rejected everywhere, consistently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from ripple.errors import NotFoundError, ValidationError
from ripple.ids import is_ulid

USERNAME_RE = re.compile(r"^[a-z0-9_]{3,30}$")
FIELD_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,40}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT = 20, 100


def require_object(body: Any, *, allowed: set[str], required: set[str]) -> dict[str, Any]:
    """Check that ``body`` is a JSON object with the required fields and no others."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        # Only names that look like field names are repeated: a response never echoes
        # arbitrary caller input (a token pasted as a key, markup).
        shown = [name for name in unknown if FIELD_NAME_RE.match(name)]
        hidden = len(unknown) - len(shown)
        listed = ", ".join(shown + ([f"{hidden} other"] if hidden else []))
        raise ValidationError(f"unknown field(s): {listed}; allowed: {', '.join(sorted(allowed))}")
    missing = sorted(f for f in required if f not in body)
    if missing:
        raise ValidationError(f"missing field(s): {', '.join(missing)}")
    return body


def _string(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValidationError(f"'{name}' must be a string")
    _require_valid_unicode(value, name)
    return value


def _require_valid_unicode(value: str, name: str) -> None:
    """JSON can carry unpaired surrogates (``"\\ud800"``) that no store or hash can encode."""
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise ValidationError(f"'{name}' must be valid Unicode (no unpaired surrogates)")


def fold_username(value: str) -> str:
    """A username as typed, the way it is stored: surrounding whitespace trimmed, lower-cased."""
    return value.strip().lower()


def is_username(value: str) -> bool:
    """True if ``value`` (already folded) is a name sign-up could have accepted."""
    return USERNAME_RE.fullmatch(value) is not None


def username(value: Any, name: str = "username") -> str:
    """Usernames are 3-30 of a-z, 0-9 and underscore; input is case-folded."""
    if not isinstance(value, str):
        raise ValidationError(f"'{name}' must be a string")
    folded = fold_username(value)
    if not is_username(folded):
        raise ValidationError(f"'{name}' must be 3-30 characters of a-z, 0-9 or _")
    return folded


def new_password(value: Any) -> str:
    """The password policy, applied where a password is *set* (sign-up), never where one is
    checked (login): 8-128 characters of valid Unicode. Raises ValidationError."""
    if not isinstance(value, str):
        raise ValidationError("'password' must be a string")
    _require_valid_unicode(value, "password")
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise ValidationError(f"'password' must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    return value


def signup_credentials(body: Any) -> tuple[str, str]:
    """Validate ``POST /auth/signup``: {username, password}, both policies applied.

    Returns (folded username, password); raises ValidationError (400)."""
    obj = require_object(body, allowed={"username", "password"}, required={"username", "password"})
    return username(obj["username"]), new_password(obj["password"])


def login_credentials(body: Any) -> tuple[str, str]:
    """Validate ``POST /auth/login``: {username, password}, both strings - the request's shape only.

    No username or password *policy* applies here: a value sign-up would refuse is simply a
    wrong credential (401 from ``AccountService.login``), so a policy made stricter later can
    never lock out an existing user, and a typo of any length is answered like any other.
    Returns (username folded as sign-up folds it, password exactly as sent); raises
    ValidationError (400) for a body that is not an object of exactly these two strings."""
    obj = require_object(body, allowed={"username", "password"}, required={"username", "password"})
    for name in ("username", "password"):
        if not isinstance(obj[name], str):
            raise ValidationError(f"'{name}' must be a string")
    return fold_username(obj["username"]), obj["password"]


def post_text(body: Any, *, max_chars: int) -> str:
    """Validate a new post body: {text}, 1..max_chars characters after NFC normalisation."""
    obj = require_object(body, allowed={"text"}, required={"text"})
    text = unicodedata.normalize("NFC", _string(obj, "text"))
    if not text.strip():
        raise ValidationError("'text' must not be empty")
    if len(text) > max_chars:
        raise ValidationError(f"'text' must be at most {max_chars} characters (got {len(text)})")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in text):
        raise ValidationError("'text' must not contain control characters")
    return text


def entity_id(value: str, what: str) -> str:
    """Ids are ULIDs; anything else cannot exist, so it is a 404 rather than a lookup."""
    if not is_ulid(value):  # not repeated: it is caller input that cannot be an id
        raise NotFoundError(f"no {what} has that id")
    return value


def page_limit(raw: str | None) -> int:
    """``?limit=``: 1 to MAX_PAGE_LIMIT in ASCII digits (DEFAULT_PAGE_LIMIT when absent or
    empty); ValidationError otherwise. Only digits: ``int`` would also take " 5", "+5", "1_0"
    and non-ASCII digits, which the OpenAPI document's integer does not."""
    if raw is None or raw == "":
        return DEFAULT_PAGE_LIMIT
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationError("'limit' must be an integer")
    # int() refuses over 4,300 digits (a ValueError); no limit of over 9 digits is in range
    limit = int(raw) if len(raw) <= 9 else MAX_PAGE_LIMIT + 1
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ValidationError(f"'limit' must be between 1 and {MAX_PAGE_LIMIT}")
    return limit


DISPLAY_NAME_MAX, BIO_MAX = 50, 160


def profile_update(body: Any) -> tuple[str | None, str | None]:
    """Validate ``PATCH /me``: {display_name?, bio?}, at least one of them."""
    obj = require_object(body, allowed={"display_name", "bio"}, required=set())
    if not obj:
        raise ValidationError("nothing to update: give 'display_name' and/or 'bio'")
    display_name = _bounded_text(obj, "display_name", DISPLAY_NAME_MAX)
    bio = _bounded_text(obj, "bio", BIO_MAX)
    return display_name, bio


def _bounded_text(obj: Mapping[str, Any], name: str, max_chars: int) -> str | None:
    if name not in obj:
        return None
    value = unicodedata.normalize("NFC", _string(obj, name)).strip()
    if len(value) > max_chars:
        raise ValidationError(f"'{name}' must be at most {max_chars} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValidationError(f"'{name}' must not contain control characters")
    return value


def account_deletion(body: Any) -> str:
    """Validate ``DELETE /me``: {password}, a string - the shape only, no password policy (as
    login: whatever was set is checked as it is). Returns the password; raises
    ValidationError (400) for any other body."""
    obj = require_object(body, allowed={"password"}, required={"password"})
    if not isinstance(obj["password"], str):
        raise ValidationError("'password' must be a string")
    return str(obj["password"])


def refresh_token(body: Any) -> str:
    """Validate ``POST /auth/refresh`` and ``/auth/logout``: {refresh_token}."""
    obj = require_object(body, allowed={"refresh_token"}, required={"refresh_token"})
    token = _string(obj, "refresh_token")
    if not token or len(token) > 4096:
        raise ValidationError("'refresh_token' is not a token")
    return token
