"""Pipelines that run Lua scripts without a second round trip.

redis-py makes a pipeline holding ``Script`` calls send ``SCRIPT EXISTS`` before every
execute: two round trips where one would do. :class:`ScriptPipeline` queues ``EVALSHA``
directly (the SHA1 is computed locally) and, for any command Redis answers ``NOSCRIPT``
(only after a restart or failover emptied its script cache), loads that script and runs that
one command again. Commands that succeeded are never sent twice, so non-idempotent scripts
(a rate limiter's) stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class ScriptPipeline:
    """Queue scripts (:meth:`script`) and plain commands (:meth:`command`), then
    :meth:`execute` them in one round trip. Raises ``redis.RedisError`` on any failure."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pipe = client.pipeline(transaction=False)
        self._scripts: list[tuple[Script, Sequence[Any], Sequence[Any]] | None] = []

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        self._pipe.evalsha(script.sha, len(keys), *keys, *args)
        self._scripts.append((script, keys, args))

    def command(self, name: str, *args: Any, **kwargs: Any) -> None:
        getattr(self._pipe, name)(*args, **kwargs)
        self._scripts.append(None)

    def execute(self) -> list[Any]:
        """Every command's result, in order."""
        results = list(self._pipe.execute(raise_on_error=False))
        for index, result in enumerate(results):
            queued = self._scripts[index]
            if isinstance(result, NoScriptError) and queued is not None:
                script, keys, args = queued
                self._client.script_load(script.script)
                results[index] = self._client.evalsha(script.sha, len(keys), *keys, *args)
            elif isinstance(result, Exception):
                raise result
        return results
