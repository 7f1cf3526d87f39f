"""Reading a home feed: Redis first, DynamoDB when the cache cannot answer, then warm it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ripple.cache.errors import CacheError
from ripple.cache.feed_cache import OUTBOX_WARM_ITEMS, FeedCache, FeedRef
from ripple.cache.post_cache import PostCache
from ripple.cache.timeline import TimelineCache, TimelinePage
from ripple.cache.views import PostViews
from ripple.cursor import decode_cursor, encode_cursor
from ripple.domain import FeedEntry, Page, Post, Relations
from ripple.ids import is_ulid, ulid_timestamp_ms
from ripple.observability import count, logger
from ripple.repositories.feed import FeedRepository
from ripple.repositories.follows import FollowRepository
from ripple.repositories.likes import LikeRepository
from ripple.repositories.posts import PostRepository
from ripple.repositories.users import UserRepository
from ripple.services.blocks import RelationsReader

# A cold feed is rebuilt with this many items at once, so the next pages are cache hits.
WARM_ITEMS = 100
_ORIGINAL = FeedEntry("", "", "", 0)  # "no item placed by a repost"


def _time_of(repost_id: str) -> int | None:
    return ulid_timestamp_ms(repost_id) if is_ulid(repost_id) else None


class PostHydrator:
    """Turns feed refs into post bodies for a reader: post cache and the reader's liked-posts
    hash in one Redis round trip; DynamoDB only for bodies not cached and likes the hash
    cannot tell (posts older than it)."""

    def __init__(
        self, posts: PostRepository, likes: LikeRepository, post_cache: PostCache, views: PostViews
    ) -> None:
        self._posts = posts
        self._likes = likes
        self._cache = post_cache
        self._views = views

    def hydrate(self, refs: Sequence[FeedRef], reader_id: str | None = None) -> list[Post]:
        ids = [r.post_id for r in refs]
        liked: dict[str, bool | None] = dict.fromkeys(ids)
        try:
            found, view = self._views.read(ids, reader_id)
            count("PostCacheHits", len(found))
            if view is not None:
                liked = view.liked
        except CacheError:
            count("CacheErrors")
            found = {}
        missing = [r for r in refs if r.post_id not in found]
        if missing:
            count("PostCacheMisses", len(missing))
            loaded = self._posts.get_many((r.author_id, r.post_id) for r in missing)
            found.update(loaded)
            if loaded:
                try:
                    self._cache.put_many(loaded.values())
                except CacheError:
                    count("CacheErrors")
        # A post deleted after it was fanned out is skipped (its retraction is on its way).
        shown = [r for r in refs if r.post_id in found]
        if reader_id is not None:
            unknown = [r.post_id for r in shown if liked.get(r.post_id) is None]
            if unknown:
                count("LikedLookups", len(unknown))
                from_table = self._likes.liked(reader_id, unknown)
                liked.update({p: p in from_table for p in unknown})
        return [
            found[r.post_id].shown(
                r.reposted_by or None,
                _time_of(r.placed) if r.reposted_by else None,
                bool(liked.get(r.post_id)) if reader_id is not None else None,
            )
            for r in shown
        ]


class PulledAuthors:
    """Which high-follower authors a reader follows: their posts are merged in at read time.

    The registry (a sparse index of marked accounts) is small and changes rarely, so each
    container keeps it for ``ttl_seconds``; which of them the reader follows is one
    BatchGetItem on the follows table. A newly marked author is missing from a container's
    registry for up to ``ttl_seconds`` plus the index's lag: fan-out keeps pushing that
    author's posts meanwhile (``FanoutService`` pull grace), so none goes unseen.
    """

    # How long a container keeps the registry: one small Query per container this often; fan-out
    # keeps pushing a newly marked author's posts for longer than this (its pull grace).
    REGISTRY_TTL_SECONDS = 10.0

    def __init__(
        self, users: UserRepository, follows: FollowRepository, ttl_seconds: float = REGISTRY_TTL_SECONDS
    ) -> None:
        self._users = users
        self._follows = follows
        self._ttl = ttl_seconds
        self._registry: list[str] = []
        self._loaded_at = -float("inf")

    def registry(self, fresh: bool = False) -> list[str]:
        """The marked accounts, read again from DynamoDB after ``ttl_seconds`` (or now)."""
        now = time.monotonic()
        if fresh or now - self._loaded_at > self._ttl:
            self._registry = self._users.high_follower_ids()
            self._loaded_at = now
        return self._registry

    def followed_among(self, reader_id: str, candidates: list[str]) -> list[str]:
        """Which of ``candidates`` the reader follows, sorted (one BatchGetItem per 100)."""
        return sorted(self._follows.followed_among(reader_id, candidates)) if candidates else []

    def for_reader(self, reader_id: str) -> list[str]:
        return self.followed_among(reader_id, self.registry())


class FeedReader:
    """The home timeline: pushed items merged with the recent posts of the high-follower
    authors the reader follows. Every source is ordered by post id and paged strictly after
    the cursor, so the merge keeps the cursor contract exactly.

    A cached read is Redis alone, two round trips: the page (``ripple.cache.timeline``:
    feed, pulled authors, their outboxes, and whether the reader's account is known), then
    bodies and the reader's likes (``ripple.cache.views``). What the cache lacks is loaded
    from DynamoDB and stored - the registry of pulled authors, the reader's pulled authors,
    an author's outbox - and the page read again (at most ``MAX_FILLS`` times); a feed the
    cache cannot answer, and Redis down, read DynamoDB (which warms the feed). A feed being
    rebuilt (``ripple.services.activity``) is not cached: it is read from DynamoDB, and the
    page is marked ``partial`` until the rebuild is complete.

    Posts by authors the reader blocks, mutes or is blocked by are left out of every page,
    whatever fan-out has done yet (``ripple.services.blocks``): the reader's relations come
    in the first round trip of a cached read (``ripple.cache.relations``), from DynamoDB
    when Redis lacks them. The cursor still names the last item read, so a page may hold
    fewer than ``limit`` posts (none, even) and have a next page.
    """

    # Each fill stores one missing piece; a page needs at most registry + pulled + outboxes.
    MAX_FILLS = 8

    def __init__(
        self,
        feed: FeedRepository,
        feed_cache: FeedCache,
        hydrator: PostHydrator,
        posts: PostRepository,
        pulled: PulledAuthors,
        timeline: TimelineCache,
        outboxes: FeedCache,
        users: UserRepository,
        relations: RelationsReader,
    ) -> None:
        self._feed = feed
        self._relations = relations
        self._users = users
        self._cache = feed_cache
        self._hydrator = hydrator
        self._posts = posts
        self._pulled = pulled
        self._timeline = timeline
        self._outboxes = outboxes

    def home(
        self,
        user_id: str,
        limit: int,
        cursor: str | None = None,
        account_check: Callable[[bool | None], None] | None = None,
    ) -> Page[Post]:
        """A page of ``user_id``'s timeline, newest first. ``account_check`` receives whether
        Redis knows the reader's account (None: it could not say) before anything is read
        from DynamoDB, and raises to refuse the read."""
        after = decode_cursor(cursor)
        count("FeedReads")
        cached = self._cached_refs(user_id, after, limit, account_check)
        rebuilding = False
        if cached is not None:
            count("FeedCacheHits")
            refs, has_more, known, last = cached
            # Redis answered the page: what it holds of the relations came in the same round
            # trip; if not complete, DynamoDB (then stored), without asking Redis again.
            relations = known if known is not None else self._relations.load(user_id)
        else:
            rebuilding = self._users.feed_rebuild_started(user_id) is not None
            if rebuilding:  # not cached until complete: the cache would keep the gaps
                count("FeedRebuildReads")
                refs, has_more = self._from_dynamodb(user_id, after, limit, warm=False)
            else:
                refs, has_more = self._read_refs(user_id, after, limit)
            refs, has_more, last = self._merge_pulled(user_id, after, limit, refs, has_more)
            relations = self._relations.of(user_id)
        next_cursor = encode_cursor(last) if has_more and last else None
        hidden = relations.hidden_authors()
        if hidden:
            shown = [r for r in refs if r.author_id not in hidden and r.reposted_by not in hidden]
            if len(shown) < len(refs):
                count("FeedItemsHidden", len(refs) - len(shown))
            refs = shown
        items = self._hydrator.hydrate(refs, reader_id=user_id)
        return Page(items=items, next_cursor=next_cursor, partial=rebuilding)

    def _cached_refs(
        self,
        user_id: str,
        after: str | None,
        limit: int,
        account_check: Callable[[bool | None], None] | None,
    ) -> tuple[list[FeedRef], bool, Relations | None, str | None] | None:
        checked = False
        try:
            for _ in range(self.MAX_FILLS):
                page = self._timeline.page(user_id, after, limit)
                if account_check is not None and not checked:
                    account_check(page.known)
                    checked = True
                if page.missing is None:
                    return page.refs, page.has_more, page.relations, page.last
                if page.missing == "feed" or (page.missing == "outbox" and after is not None):
                    return None  # DynamoDB answers this page (and warms the feed)
                self._fill(user_id, page)
            return None
        except CacheError as exc:
            logger.warning("timeline cache unavailable, reading DynamoDB", extra={"error": str(exc)})
            count("CacheErrors")
            if account_check is not None and not checked:
                account_check(None)
            return None

    def _fill(self, user_id: str, page: TimelinePage) -> None:
        """Load the piece ``page`` lacks from DynamoDB and store it (raises CacheError)."""
        count("TimelineFills")
        if page.missing == "registry":
            # Redis keeps it for every container now; no second cache in this one.
            self._timeline.store_registry(self._pulled.registry(fresh=True))
        elif page.missing == "pulled":
            registry = page.detail
            candidates = [a for a in registry.partition("|")[2].split(",") if a]
            self._timeline.store_pulled(user_id, registry, self._pulled.followed_among(user_id, candidates))
        elif page.missing == "outbox":
            author = page.detail
            self._outboxes.begin_warm(author)
            recent = self._posts.recent_by_author(author, OUTBOX_WARM_ITEMS)
            refs = [FeedRef(post_id=p.post_id, author_id=author) for p in recent]
            self._outboxes.warm(author, None, refs, len(recent) < OUTBOX_WARM_ITEMS)

    def _merge_pulled(
        self, user_id: str, after: str | None, limit: int, refs: list[FeedRef], has_more: bool
    ) -> tuple[list[FeedRef], bool, str | None]:
        """The page merged with the pulled authors' posts: the first ``limit`` of the merge,
        as if every copy showed (so no source is read past where another stops), then a pulled
        copy of a post the feed holds placed by a repost (newer, maybe on an earlier page) left
        out. Returns the refs shown, whether more follow, and the position the page ends at."""
        authors = self._pulled.for_reader(user_id)
        if not authors:
            return refs, has_more, refs[-1].position if refs else None
        pushed = {(r.position, r.post_id): r for r in refs}
        merged = dict(pushed)
        for author in authors:
            posts = self._posts.recent_by_author(author, limit + 1, before=after)
            has_more = has_more or len(posts) > limit
            for post in posts:  # a pushed copy of the same item stays (one item, one place)
                merged.setdefault(
                    (post.post_id, post.post_id), FeedRef(post_id=post.post_id, author_id=author)
                )
        ordered = [merged[key] for key in sorted(merged, reverse=True)]
        page, more = ordered[:limit], has_more or len(ordered) > limit
        pulled = [r for r in page if (r.position, r.post_id) not in pushed]
        placed = self._feed.get_many((user_id, r.post_id) for r in pulled) if pulled else {}
        shown: list[FeedRef] = []
        seen: set[str] = set()
        for ref in page:
            elsewhere = ref in pulled and placed.get((user_id, ref.post_id), _ORIGINAL).reposted_by
            if ref.post_id not in seen and not elsewhere:
                shown.append(ref)
            seen.add(ref.post_id)
        count("FeedPullMerges")
        return shown, more, page[-1].position if page else None

    def _read_refs(self, user_id: str, after: str | None, limit: int) -> tuple[list[FeedRef], bool]:
        try:
            cached = self._cache.page(user_id, after, limit)
        except CacheError as exc:
            logger.warning("feed cache unavailable, reading DynamoDB", extra={"error": str(exc)})
            count("CacheErrors")
            return self._from_dynamodb(user_id, after, limit, warm=False)
        if cached is not None:
            count("FeedCacheHits")
            return cached.refs, cached.has_more
        count("FeedCacheMisses")
        return self._from_dynamodb(user_id, after, limit, warm=True)

    def _from_dynamodb(
        self, user_id: str, after: str | None, limit: int, *, warm: bool
    ) -> tuple[list[FeedRef], bool]:
        fetch = max(limit + 1, WARM_ITEMS) if warm else limit + 1
        if warm and after is None:
            self._best_effort(lambda: self._cache.begin_warm(user_id))
        entries = self._feed.page(user_id, fetch, after)
        refs = [FeedRef.of(e) for e in entries]
        if warm:
            complete = len(entries) < fetch
            self._best_effort(lambda: self._cache.warm(user_id, after, refs, complete))
        return refs[:limit], len(refs) > limit

    @staticmethod
    def _best_effort(action: Callable[[], object]) -> None:
        try:
            action()
        except CacheError:
            count("CacheErrors")
