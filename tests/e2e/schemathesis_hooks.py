"""Schemathesis hooks for ``test_schemathesis.py``'s run of the ``st`` command (loaded through
``SCHEMATHESIS_HOOKS``): every generated request carries one of several users' access tokens,
in turn, from ``RIPPLE_ST_TOKENS`` (comma-separated), so that the per-user write limit (60 a
minute) is not what a CI-sized run measures. Public routes ignore the header."""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

import schemathesis

_TOKENS = itertools.cycle(os.environ["RIPPLE_ST_TOKENS"].split(","))
_LOCK = threading.Lock()


@schemathesis.auth(refresh_interval=None)  # asked for every request: the tokens rotate
class RotatingBearerTokens:
    def get(self, case: Any, ctx: Any) -> str:
        with _LOCK:
            return next(_TOKENS)

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
