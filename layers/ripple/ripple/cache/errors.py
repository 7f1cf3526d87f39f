"""Cache failures as one exception type, so services never import the Redis client."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import redis

P = ParamSpec("P")
R = TypeVar("R")


class CacheError(Exception):
    """Redis failed or timed out. Readers fall back to DynamoDB; stream writers retry."""


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise CacheError(str(exc) or exc.__class__.__name__) from exc


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`translate_errors` for cache methods."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with translate_errors():
            return fn(*args, **kwargs)

    return wrapper
