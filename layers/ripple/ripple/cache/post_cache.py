"""Post bodies in Redis (``post:{post_id}``, JSON with a TTL); feeds hold ids only.

The JSON is orjson's: a cached feed page parses one body per item (``ripple.http.responses``
has the measurement).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import redis

from ripple.cache.errors import translated
from ripple.cache.pipelines import ScriptPipeline
from ripple.domain import Post


def post_key(post_id: str) -> str:
    return f"post:{post_id}"


class PostCache:
    """Raises :class:`ripple.cache.errors.CacheError` when Redis fails."""

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self._redis = client
        self._ttl = ttl_seconds

    @translated
    def get_many(self, post_ids: Sequence[str]) -> dict[str, Post]:
        if not post_ids:
            return {}
        return self.parse_many(post_ids, self._redis.mget([post_key(p) for p in post_ids]))

    def queue_get(self, pipe: ScriptPipeline, post_ids: Sequence[str]) -> None:
        """Queue :meth:`get_many` on ``pipe``; read its result with :meth:`parse_many`."""
        pipe.command("mget", [post_key(p) for p in post_ids])

    @staticmethod
    def parse_many(post_ids: Sequence[str], values: Sequence[Any]) -> dict[str, Post]:
        found: dict[str, Post] = {}
        for post_id, raw in zip(post_ids, values, strict=True):
            if raw:
                found[post_id] = Post.from_cache(orjson.loads(raw))
        return found

    @translated
    def put_many(self, posts: Iterable[Post]) -> None:
        pipe = ScriptPipeline(self._redis)
        for post in posts:
            self.queue_put(pipe, post)
        pipe.execute()

    def queue_put(self, pipe: ScriptPipeline, post: Post) -> None:
        """Queue storing ``post`` on ``pipe``; the caller executes it. The body is orjson's JSON
        of ``Post.to_cache`` (strings and integers only), which orjson always writes: post text
        with a lone surrogate, the one string it refuses, is refused at the API
        (``ripple.validation``), so no post holds one."""
        pipe.command("set", post_key(post.post_id), orjson.dumps(post.to_cache()), ex=self._ttl)

    def queue_delete(self, pipe: ScriptPipeline, post_id: str) -> None:
        pipe.command("delete", post_key(post_id))

    @translated
    def delete(self, post_id: str) -> None:
        self._redis.delete(post_key(post_id))
