"""Home feeds in Redis: one sorted set per reader, ``feed:home:{user_id}``.

Members are ``"{post_id}:{author_id}"``, or ``"{repost_id}:{author_id}:{post_id}:{reposter}"``
for an item placed by a repost (``FeedRef``), and every score is 0, so Redis orders members
lexicographically: by placement, the ULID they start with, which is time order. That makes
paging exact: ``ZREVRANGEBYLEX`` from a cursor (a placement) never duplicates or skips, even
with equal timestamps.

Invariant: the set holds a *contiguous* newest-first prefix of the reader's DynamoDB feed.
The member ``"0"`` (lower than any ULID) is a sentinel meaning "and nothing older exists":
with it the cache can answer any page; without it, a page that runs past the cached tail
is read from DynamoDB. Trimming to ``max_items`` removes the oldest members first (the
sentinel included), so a trimmed feed correctly becomes partial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import redis

from ripple.cache.errors import translated
from ripple.cache.pipelines import ScriptPipeline
from ripple.domain import FeedEntry

SENTINEL = "0"
# While a reader's feed is being rebuilt from DynamoDB, fan-out keeps adding to it, so an
# item written between the rebuild's query and its ZADD is not lost.
WARMING_TTL_SECONDS = 10

# KEYS: feed, warming-marker; ARGV: member, max_items, ttl, sentinel
_ADD_SCRIPT = """
local key, marker = KEYS[1], KEYS[2]
local member, max_items, ttl, sentinel = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if redis.call('EXISTS', key) == 0 then
  if redis.call('EXISTS', marker) == 0 then return 0 end
elseif not redis.call('ZSCORE', key, sentinel) then
  local lowest = redis.call('ZRANGE', key, 0, 0)[1]
  if lowest and member < lowest then return 0 end
end
redis.call('ZADD', key, 0, member)
redis.call('ZREMRANGEBYRANK', key, 0, -(max_items + 1))
redis.call('EXPIRE', key, ttl)
return 1
"""

# KEYS: feed, warming-marker; ARGV: after ('' = top of feed), max_items, ttl, sentinel, complete, members...
_WARM_SCRIPT = """
local key = KEYS[1]
-- the rebuild is done: from now on only a cached feed takes new items
redis.call('DEL', KEYS[2])
local after, max_items, ttl, sentinel, complete = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
if after ~= '' then
  local lowest = redis.call('ZRANGE', key, 0, 0)[1]
  -- only extend a prefix that reaches down to the cursor, or the union would have a gap
  if not lowest or lowest == sentinel or string.sub(lowest, 1, string.len(after)) > after then
    return 0
  end
end
local lowest_warmed = nil
for i = 6, #ARGV do
  redis.call('ZADD', key, 0, ARGV[i])
  if not lowest_warmed or ARGV[i] < lowest_warmed then lowest_warmed = ARGV[i] end
end
if complete == '1' then
  redis.call('ZADD', key, 0, sentinel)
elseif after == '' and lowest_warmed then
  -- items older than the page that fan-out added while it was read would leave gaps below it
  redis.call('ZREMRANGEBYLEX', key, '-', '(' .. lowest_warmed)
end
redis.call('ZREMRANGEBYRANK', key, 0, -(max_items + 1))
redis.call('EXPIRE', key, ttl)
return 1
"""


@dataclass(frozen=True)
class FeedRef:
    """What the feed cache stores about an item: enough to fetch the post by its key, and
    where it is placed (a repost's id and its reposter, for an item a repost brought)."""

    post_id: str
    author_id: str
    placed: str = ""  # "" for the post's own place
    reposted_by: str = ""

    @property
    def position(self) -> str:
        """Where the item sits in its feed: what a cursor names."""
        return self.placed or self.post_id

    @property
    def member(self) -> str:
        if self.reposted_by:
            return f"{self.placed}:{self.author_id}:{self.post_id}:{self.reposted_by}"
        return f"{self.post_id}:{self.author_id}"

    @classmethod
    def from_member(cls, member: str) -> FeedRef:
        parts = member.split(":")
        if len(parts) == 4:
            placed, author_id, post_id, reposted_by = parts
            return cls(post_id=post_id, author_id=author_id, placed=placed, reposted_by=reposted_by)
        post_id, _, author_id = member.partition(":")
        return cls(post_id=post_id, author_id=author_id)

    @classmethod
    def of(cls, entry: FeedEntry) -> FeedRef:
        if entry.reposted_by:
            return cls(entry.post_id, entry.author_id, placed=entry.placed, reposted_by=entry.reposted_by)
        return cls(post_id=entry.post_id, author_id=entry.author_id)


@dataclass(frozen=True)
class CachedPage:
    refs: list[FeedRef]
    has_more: bool


def feed_key(user_id: str) -> str:
    return f"feed:home:{user_id}"


# A pulled author's outbox is loaded with this many posts: a first page of any size (at most
# validation.MAX_PAGE_LIMIT + 1) and the next ones come from it.
OUTBOX_WARM_ITEMS = 200
# Kept per outbox: the warmed window plus as many newer posts (trimming drops the oldest).
OUTBOX_MAX_ITEMS = 2 * OUTBOX_WARM_ITEMS


def outbox_key(author_id: str) -> str:
    """An author's own recent posts, for the readers who pull them (high-follower authors);
    the same structure and rules as a home feed."""
    return f"feed:outbox:{author_id}"


def _warming_key(key: str) -> str:
    return f"{key}:warming"


class FeedCache:
    """Every method raises :class:`ripple.cache.errors.CacheError` when Redis fails;
    readers treat that as a miss, stream consumers let the record be retried."""

    def __init__(
        self,
        client: redis.Redis,
        max_items: int,
        ttl_seconds: int,
        key_of: Callable[[str], str] = feed_key,
    ) -> None:
        self._redis = client
        self._key = key_of
        self._max_items = max_items
        self._ttl = ttl_seconds
        self._add = client.register_script(_ADD_SCRIPT)
        self._warm = client.register_script(_WARM_SCRIPT)

    @translated
    def page(self, user_id: str, after: str | None, limit: int) -> CachedPage | None:
        """The page after ``after`` if the cache can answer it exactly, else None."""
        key = self._key(user_id)
        upper = f"({after}" if after else "+"
        pipe = self._redis.pipeline(transaction=False)
        pipe.exists(key)
        pipe.zrevrangebylex(key, upper, "-", start=0, num=limit + 1)
        pipe.expire(key, self._ttl)
        exists, members, _ = pipe.execute()
        if not exists:
            return None
        complete = SENTINEL in members
        refs = [FeedRef.from_member(m) for m in members if m != SENTINEL]
        if len(refs) > limit:
            return CachedPage(refs=refs[:limit], has_more=True)
        if complete:
            return CachedPage(refs=refs, has_more=False)
        return None  # the cached prefix ends inside this page: DynamoDB must answer

    @translated
    def begin_warm(self, user_id: str) -> None:
        self._redis.set(_warming_key(self._key(user_id)), "1", ex=WARMING_TTL_SECONDS)

    @translated
    def warm(self, user_id: str, after: str | None, refs: Sequence[FeedRef], complete: bool) -> bool:
        """Store a page read from DynamoDB: at the top (``after`` None), or below the
        cached prefix when that prefix already reaches down to ``after`` (no gap)."""
        args: list[str | int] = [after or "", self._max_items, self._ttl, SENTINEL, "1" if complete else "0"]
        keys = [self._key(user_id), _warming_key(self._key(user_id))]
        return bool(self._warm(keys=keys, args=args + [r.member for r in refs]))

    @translated
    def add(self, user_id: str, ref: FeedRef) -> bool:
        """Insert one item if the feed is cached (or being warmed); returns whether it was."""
        return bool(
            self._add(
                keys=[self._key(user_id), _warming_key(self._key(user_id))],
                args=[ref.member, self._max_items, self._ttl, SENTINEL],
            )
        )

    def queue_add(self, pipe: ScriptPipeline, user_id: str, ref: FeedRef) -> None:
        """Queue :meth:`add` on ``pipe`` (see ``ripple.cache.writes``)."""
        pipe.script(
            self._add,
            [self._key(user_id), _warming_key(self._key(user_id))],
            [ref.member, self._max_items, self._ttl, SENTINEL],
        )

    def queue_remove(self, pipe: ScriptPipeline, user_id: str, ref: FeedRef) -> None:
        """Queue removing one item on ``pipe``."""
        pipe.command("zrem", self._key(user_id), ref.member)

    @translated
    def remove_many(self, items: Iterable[tuple[str, FeedRef]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for user_id, ref in items:
            pipe.zrem(self._key(user_id), ref.member)
        pipe.execute()

    @translated
    def members(self, user_id: str) -> list[str]:
        """Every member, newest first (for checks and tests)."""
        return [str(m) for m in self._redis.zrevrangebylex(self._key(user_id), "+", "-")]

    @translated
    def is_cached(self, user_id: str) -> bool:
        return bool(self._redis.exists(self._key(user_id)))

    @translated
    def drop(self, user_id: str) -> None:
        """Forget the cached feed (and any rebuild in flight): the next read rebuilds it."""
        self._redis.delete(self._key(user_id), _warming_key(self._key(user_id)))

    def queue_drop(self, pipe: ScriptPipeline, user_id: str) -> None:
        """:meth:`drop` queued on ``pipe``."""
        pipe.command("delete", self._key(user_id), _warming_key(self._key(user_id)))
