"""A home timeline page from Redis alone, in one round trip.

One Lua script reads, on the Redis node that holds them all (ElastiCache in cluster mode
disabled; the script derives outbox keys from the reader's pulled authors):

* the reader's cached feed (``ripple.cache.feed_cache``), exactly as ``FeedCache.page``;
* the pulled-author registry ``pulled:registry`` - ``"{fingerprint}|{id,id,...}"``, the
  high-follower accounts, kept for ``REGISTRY_TTL_SECONDS`` and then read again from DynamoDB;
* the reader's pulled authors ``pulled:reader:{id}`` - a hash {``fp``: the registry
  fingerprint it was computed against, ``authors``: ``"id,id"``}; a registry change
  (another fingerprint) or a follow or unfollow (the API deletes the hash) makes it stale;
* each pulled author's outbox (``feed:outbox:{id}``, the feed cache's rules), merged in;
  a post shows once, at its newest place (an item a repost placed beats the pulled copy).

It answers the page, or names the one thing missing (``feed``, ``registry``, ``pulled`` or
``outbox`` with its author) for the caller to load from DynamoDB and store, or to read
that page from DynamoDB instead. The same call asks whether the reader's account is known
(``ripple.cache.known_users``) and reads the reader's blocks and mutes
(``ripple.cache.relations``), so a cached read is one round trip before hydration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from ripple.cache.errors import translated
from ripple.cache.feed_cache import SENTINEL, FeedRef, feed_key, outbox_key
from ripple.cache.known_users import KnownUsers
from ripple.cache.pipelines import ScriptPipeline
from ripple.cache.relations import RelationsCache, parse
from ripple.domain import Relations

REGISTRY_KEY = "pulled:registry"
# How long the registry is trusted: a newly marked author is pulled by readers within this
# (fan-out keeps pushing that author's posts for longer: HIGH_FOLLOWER_PULL_GRACE_SECONDS).
REGISTRY_TTL_SECONDS = 10
# A reader's pulled authors are recomputed at least this often even if no follow or unfollow
# deleted them (a deletion that failed while Redis was unreachable heals by then).
PULLED_TTL_SECONDS = 300


def pulled_key(reader_id: str) -> str:
    return f"pulled:reader:{reader_id}"


def fingerprint(author_ids: Sequence[str]) -> str:
    """Names a registry's content (order-free), so a reader's pulled set knows its basis."""
    return hashlib.sha1(",".join(sorted(author_ids)).encode()).hexdigest()[:16]


# KEYS: feed, registry, reader's pulled hash; ARGV: after ('' = top), limit, feed ttl,
# sentinel, outbox key prefix. Returns {'ok', has_more, member...} or {'miss', what, detail}.
_PAGE_SCRIPT = """
local after, limit, ttl, sentinel, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local upper = '+'
if after ~= '' then upper = '(' .. after end

-- The newest limit+1 members below the cursor, if this cached prefix answers them exactly.
local function page(key)
  if redis.call('EXISTS', key) == 0 then return nil end
  local members = redis.call('ZREVRANGEBYLEX', key, upper, '-', 'LIMIT', 0, limit + 1)
  local refs, complete = {}, false
  for _, m in ipairs(members) do
    if m == sentinel then complete = true else refs[#refs + 1] = m end
  end
  if #refs > limit or complete then return refs end
  return nil
end

-- A member's post: "{placed}:{author}:{post}:{reposter}" (placed by a repost) or "{post}:{author}".
local function post_of(m)
  local post = string.match(m, '^[^:]*:[^:]*:([^:]*):')
  return post or string.match(m, '^[^:]*')
end

local refs = page(KEYS[1])
if not refs then return {'miss', 'feed', ''} end
local more = #refs > limit
redis.call('EXPIRE', KEYS[1], ttl)
local registry = redis.call('GET', KEYS[2])
if not registry then return {'miss', 'registry', ''} end
local bar = string.find(registry, '|', 1, true)
local fp, listed = string.sub(registry, 1, bar - 1), string.sub(registry, bar + 1)
-- A post shows once, at its newest place: a pulled copy of a post the feed holds placed by
-- a repost (newer, maybe on an earlier page) is left out.
local seen = {}
if listed ~= '' then
  local pulled = redis.call('HMGET', KEYS[3], 'fp', 'authors')
  if pulled[1] ~= fp then return {'miss', 'pulled', registry} end
  local any = false
  for author in string.gmatch(pulled[2] or '', '[^,]+') do
    local outbox = page(prefix .. author)
    if not outbox then return {'miss', 'outbox', author} end
    if #outbox > limit then more = true end
    for _, m in ipairs(outbox) do refs[#refs + 1] = m end
    any = true
  end
  if any and after ~= '' then
    for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], '(' .. after, '+')) do
      if string.match(m, '^[^:]*:[^:]*:[^:]*:') then seen[post_of(m)] = true end
    end
  end
end
table.sort(refs, function(a, b) return a > b end)
local merged, last = {}, nil
for _, m in ipairs(refs) do
  if m ~= last then merged[#merged + 1] = m end  -- a pushed and a pulled copy of one item
  last = m
end
-- The page is the first `limit` of the merge, as if every member showed (so no source is
-- read past where another stops); a copy left out still ends the page if it is last (the
-- cursor names it), as a hidden post does.
local count = math.min(limit, #merged)
local result = {'ok', (more or #merged > limit) and 1 or 0, merged[count] or ''}
for i = 1, count do
  local post = post_of(merged[i])
  if not seen[post] then result[#result + 1] = merged[i] end
  seen[post] = true
end
return result
"""


# The page script's first reply element when the cache lacks a part: [MISS, what, detail].
MISS = "miss"


@dataclass(frozen=True)
class TimelinePage:
    """What one read found: ``refs``, ``has_more`` and ``last`` (where the next page starts:
    the cursor) when ``missing`` is None; otherwise ``missing`` is "feed", "registry",
    "pulled" (``detail``: the registry value) or "outbox" (``detail``: the author).
    ``known``: whether the reader's account is known; ``relations``: the reader's blocks and
    mutes, None when Redis does not hold them complete."""

    known: bool
    refs: list[FeedRef]
    has_more: bool
    missing: str | None = None
    detail: str = ""
    relations: Relations | None = None
    last: str | None = None  # the position the page ends at (its last item, or a copy left out)


class TimelineCache:
    """Raises :class:`ripple.cache.errors.CacheError` when Redis fails."""

    def __init__(
        self,
        client: redis.Redis,
        known: KnownUsers,
        feed_ttl_seconds: int,
        relations: RelationsCache | None = None,
    ) -> None:
        self._redis = client
        self._known = known
        self._relations = relations or RelationsCache(client)
        self._feed_ttl = feed_ttl_seconds
        self._page = client.register_script(_PAGE_SCRIPT)

    @translated
    def page(self, reader_id: str, after: str | None, limit: int) -> TimelinePage:
        pipe = ScriptPipeline(self._redis)
        self._known.queue_is_known(pipe, reader_id)
        pipe.script(
            self._page,
            [feed_key(reader_id), REGISTRY_KEY, pulled_key(reader_id)],
            [after or "", limit, self._feed_ttl, SENTINEL, outbox_key("")],
        )
        self._relations.queue_read(pipe, reader_id)
        known, (status, *rest), members = pipe.execute()
        relations = parse(members)
        if status == MISS:
            return TimelinePage(
                bool(known), [], False, missing=str(rest[0]), detail=str(rest[1]), relations=relations
            )
        refs = [FeedRef.from_member(m) for m in rest[2:]]
        last = FeedRef.from_member(str(rest[1])).position if rest[1] else None
        return TimelinePage(bool(known), refs, bool(int(rest[0])), relations=relations, last=last)

    @translated
    def store_registry(self, author_ids: Sequence[str]) -> str:
        """Store the registry read from DynamoDB; returns its value as the script reads it."""
        value = f"{fingerprint(author_ids)}|{','.join(sorted(author_ids))}"
        self._redis.set(REGISTRY_KEY, value, ex=REGISTRY_TTL_SECONDS)
        return value

    @translated
    def store_pulled(self, reader_id: str, registry: str, author_ids: Sequence[str]) -> None:
        """Which registry authors ``reader_id`` follows, computed against ``registry``."""
        fp = registry.partition("|")[0]
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(pulled_key(reader_id), mapping={"fp": fp, "authors": ",".join(sorted(author_ids))})
        pipe.expire(pulled_key(reader_id), PULLED_TTL_SECONDS)
        pipe.execute()

    @translated
    def forget_pulled(self, reader_id: str) -> None:
        """After a follow or unfollow: the reader's pulled authors are computed again."""
        self._redis.delete(pulled_key(reader_id))
