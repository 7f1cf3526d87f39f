"""Each reader's blocks and mutes, in Redis: ``relations:{user_id}``, a small set read in the
round trip a feed page makes anyway (``ripple.cache.timeline``), so a cached feed read
filters blocked and muted authors without a DynamoDB call.

Members are typed ids: ``b:{id}`` (the user blocks id), ``m:{id}`` (mutes id), ``B:{id}``
(id blocks the user), and ``_``, the marker of a complete set - one loaded from DynamoDB.
The API writes every change through (SADD / SREM of the typed member, both users' sets for
a block), so an existing set stays exact; a set without the marker (absent, or made only of
write-through additions) is loaded again from DynamoDB and stored, and SADD unions the two,
so an addition racing the load is never lost. A removal racing a load can leave a member
that no longer holds (hiding too much, never too little) until the set expires.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from ripple.cache.errors import translated
from ripple.cache.pipelines import ScriptPipeline
from ripple.domain import BLOCK, MUTE, Relations

# A set is loaded again from DynamoDB at least this often: the bound on a write-through that
# failed (Redis unreachable for the write, reachable for the next read) or a removal that
# raced a load. Each load is two Queries for that reader, so every 10 minutes is cheap.
RELATIONS_TTL_SECONDS = 600
COMPLETE = "_"
_BLOCKS, _MUTES, _BLOCKED_BY = "b:", "m:", "B:"


def relations_key(user_id: str) -> str:
    return f"relations:{user_id}"


def members_of(relations: Relations) -> list[str]:
    """The typed members that say ``relations`` (what a reader's feed needs of them)."""
    return (
        [_BLOCKS + i for i in relations.blocks]
        + [_MUTES + i for i in relations.mutes]
        + [_BLOCKED_BY + i for i in relations.blocked_by]
    )


def parse(members: Iterable[bytes | str]) -> Relations | None:
    """The relations a set holds, or None if it is not complete (no marker)."""
    text = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    if COMPLETE not in text:
        return None

    def typed(prefix: str) -> frozenset[str]:
        return frozenset(m[len(prefix) :] for m in text if m.startswith(prefix))

    return Relations(blocks=typed(_BLOCKS), mutes=typed(_MUTES), blocked_by=typed(_BLOCKED_BY))


def changed_members(kind: str, user_id: str, target_id: str) -> list[tuple[str, str]]:
    """(set owner, member) pairs that a block or mute of ``target_id`` by ``user_id`` adds
    (or its removal removes)."""
    if kind == BLOCK:
        return [(user_id, _BLOCKS + target_id), (target_id, _BLOCKED_BY + user_id)]
    if kind == MUTE:
        return [(user_id, _MUTES + target_id)]
    raise ValueError(f"unknown relation kind {kind!r}")


class RelationsCache:
    """Raises :class:`ripple.cache.errors.CacheError` when Redis fails."""

    def __init__(self, client: redis.Redis, ttl_seconds: int = RELATIONS_TTL_SECONDS) -> None:
        self._redis = client
        self._ttl = ttl_seconds

    @staticmethod
    def queue_read(pipe: ScriptPipeline, user_id: str) -> None:
        """Queue the read on ``pipe``; give its result to :func:`parse`."""
        pipe.command("smembers", relations_key(user_id))

    @translated
    def read(self, user_id: str) -> Relations | None:
        """The user's relations if Redis holds them complete (one round trip)."""
        return parse(self._redis.smembers(relations_key(user_id)))

    @translated
    def store(self, user_id: str, relations: Relations) -> None:
        """Store relations loaded from DynamoDB (merged with what write-through added)."""
        key = relations_key(user_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(key, COMPLETE, *members_of(relations))
        pipe.expire(key, self._ttl)
        pipe.execute()

    @translated
    def change(self, kind: str, user_id: str, target_id: str, *, added: bool) -> None:
        """Write a committed block or mute (``added``) or its removal through, in one round
        trip. An addition to a set that does not exist yet makes one without the marker (it
        is loaded on its next read). An addition also restarts the set's TTL (plain EXPIRE:
        ``NX`` would need Redis 7, and the template does not pin the engine's version)."""
        pipe = self._redis.pipeline(transaction=False)
        for owner, member in changed_members(kind, user_id, target_id):
            key = relations_key(owner)
            if added:
                pipe.sadd(key, member)
                pipe.expire(key, self._ttl)  # an incomplete set expires too
            else:
                pipe.srem(key, member)
        pipe.execute()
