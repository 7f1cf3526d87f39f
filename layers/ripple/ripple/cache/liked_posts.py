"""Which posts a reader liked, in Redis: ``liked:{user_id}``, a hash {post_id: "1"} plus a
``_since`` field. Maintained by the API (write-through after each like or unlike commits)
and by the cache refresher from the likes stream (which repairs a write-through that failed).

The rule that makes absence meaningful: the hash is created empty, with ``_since`` = a ULID
floor a margin after Redis' clock, and from then on every like and unlike of that reader
reaches it. A post with an id above ``_since`` was created after the hash, so all its likes
by this reader happened after it too: present means liked, absent means not. For older
posts the hash cannot tell, and DynamoDB answers. The margin covers clocks of the
containers that mint post ids running ahead of Redis' (a post id from a fast clock could
otherwise sort above ``_since`` although the post, and a like of it, came first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from ripple.cache.errors import translated
from ripple.cache.pipelines import ScriptPipeline

SINCE_FIELD = "_since"
# Clock skew tolerated between the containers minting post ids and Redis: Lambda and
# ElastiCache hosts keep time with the Amazon Time Sync Service (well under a millisecond
# off UTC), so a second is a wide margin; it costs DynamoDB lookups only for posts made in
# the first second of a reader's hash.
SKEW_MARGIN_MS = 1_000
# A reader who likes this much gets a fresh hash (a new _since): bounded memory per reader.
MAX_LIKES = 2000
TTL_SECONDS = 7 * 24 * 3600  # like the feed cache: an absent reader's hash expires


# KEYS: hash; ARGV: ttl, margin ms, then post ids. Creates the hash when absent. Returns
# {since, flag per post id ("1" or false)}.
_VIEW_SCRIPT = """
local key = KEYS[1]
local since = redis.call('HGET', key, '_since')
if not since then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
  local alphabet, digits = '0123456789ABCDEFGHJKMNPQRSTVWXYZ', ''
  for _ = 1, 10 do
    local d = ms % 32
    digits = string.sub(alphabet, d + 1, d + 1) .. digits
    ms = (ms - d) / 32
  end
  since = digits .. string.rep('Z', 16)
  redis.call('HSET', key, '_since', since)
end
redis.call('EXPIRE', key, ARGV[1])
local result = {since}
for i = 3, #ARGV do result[#result + 1] = redis.call('HEXISTS', key, ARGV[i]) end
return result
"""

# KEYS: hash; ARGV: post id, "1" (liked) or "0" (unliked), max likes. Only an existing hash.
_RECORD_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], ARGV[1], '1') else redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[3]) + 1 then redis.call('DEL', KEYS[1]) end  -- + _since
return 1
"""


def liked_key(user_id: str) -> str:
    return f"liked:{user_id}"


@dataclass(frozen=True)
class LikedView:
    """For each asked post id: True/False when the hash knows, None when DynamoDB must say."""

    liked: dict[str, bool | None]


class LikedPosts:
    """Raises :class:`ripple.cache.errors.CacheError` when Redis fails."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._view = client.register_script(_VIEW_SCRIPT)
        self._record = client.register_script(_RECORD_SCRIPT)

    def queue_view(self, pipe: ScriptPipeline, user_id: str, post_ids: Sequence[str]) -> None:
        """Queue the lookup on ``pipe``; read its result with :meth:`view_of`."""
        pipe.script(self._view, [liked_key(user_id)], [TTL_SECONDS, SKEW_MARGIN_MS, *post_ids])

    @staticmethod
    def view_of(post_ids: Sequence[str], result: Sequence[object]) -> LikedView:
        since, *flags = result
        return LikedView(
            {p: bool(f) if p > str(since) else None for p, f in zip(post_ids, flags, strict=True)}
        )

    @translated
    def record(self, user_id: str, post_id: str, liked: bool) -> None:
        """A committed like (``liked``) or unlike, if the reader's hash exists."""
        self._record(keys=[liked_key(user_id)], args=[post_id, "1" if liked else "0", MAX_LIKES])

    def queue_drop(self, pipe: ScriptPipeline, user_id: str) -> None:
        """Forget the reader's hash (a deleted account's), queued on ``pipe``."""
        pipe.command("delete", liked_key(user_id))

    def queue_record(self, pipe: ScriptPipeline, user_id: str, post_id: str, liked: bool) -> None:
        """:meth:`record` queued on ``pipe``."""
        pipe.script(self._record, [liked_key(user_id)], [post_id, "1" if liked else "0", MAX_LIKES])
