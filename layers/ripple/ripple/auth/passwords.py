"""Password hashing with scrypt (a memory-hard KDF from the standard library).

Stored form: ``scrypt$n$r$p$salt_b64$hash_b64`` so the cost can be raised later
without invalidating existing hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_R, _P, _DKLEN = 8, 1, 32


class PasswordHasher:
    def __init__(self, n: int = 2**14) -> None:
        self._n = n

    def hash(self, password: str) -> str:
        salt = os.urandom(16)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=self._n, r=_R, p=_P, dklen=_DKLEN)
        return "$".join(["scrypt", str(self._n), str(_R), str(_P), _b64(salt), _b64(digest)])

    def verify(self, password: str, stored: str) -> bool:
        """True if ``password`` is the one ``stored`` was made from. Never raises, for any
        string: an unpaired surrogate (which sign-up refuses, so no stored hash can match)
        is encoded with ``surrogatepass`` and simply verifies as wrong, at the same cost."""
        try:
            scheme, n, r, p, salt, digest = stored.split("$")
            if scheme != "scrypt":
                return False
            expected = base64.b64decode(digest)
            actual = hashlib.scrypt(
                password.encode("utf-8", "surrogatepass"),
                salt=base64.b64decode(salt),
                n=int(n),
                r=int(r),
                p=int(p),
                dklen=len(expected),
            )
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
