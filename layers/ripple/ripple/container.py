"""The composition root: builds clients and services once per container, lazily.

Each Lambda touches only what it needs (the fan-out function never builds the password
hasher or fetches the JWT secret), and nothing is rebuilt per invocation.

Each part's module is imported where the part is built, so a function's cold start imports
only what it builds (issue 11): the cache refresher calls no AWS API and imports neither
PynamoDB nor botocore's clients; the fan-out function imports no redis, JWT or rate limits;
none imports another function's services. The imports under TYPE_CHECKING are for annotations.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from ripple.config import DAY, Settings, get_settings
from ripple.observability import trace_aws_calls

if TYPE_CHECKING:
    import redis

    from ripple.auth.tokens import TokenService
    from ripple.cache.feed_cache import FeedCache
    from ripple.cache.known_users import KnownUsers
    from ripple.cache.liked_posts import LikedPosts
    from ripple.cache.post_cache import PostCache
    from ripple.cache.rate_limit import RateLimiter
    from ripple.cache.relations import RelationsCache
    from ripple.cache.timeline import TimelineCache
    from ripple.repositories.blocks import BlockRepository
    from ripple.repositories.feed import FeedRepository
    from ripple.repositories.follows import FollowRepository
    from ripple.repositories.likes import LikeRepository
    from ripple.repositories.notifications import NotificationRepository
    from ripple.repositories.posts import PostRepository
    from ripple.repositories.refresh_tokens import RefreshTokenRepository
    from ripple.repositories.reposts import RepostRepository
    from ripple.repositories.users import UserRepository
    from ripple.services.access import AccessGuard
    from ripple.services.accounts import AccountService
    from ripple.services.activity import ReaderActivity
    from ripple.services.blocks import BlockService, RelationsReader
    from ripple.services.cache_refresh import CacheRefresher
    from ripple.services.erasure import AccountErasure
    from ripple.services.fanout import FanoutConsumer, FanoutService
    from ripple.services.feed import FeedReader
    from ripple.services.follows import FollowService
    from ripple.services.health import HealthService
    from ripple.services.notifications import NotificationProducer, NotificationService
    from ripple.services.posts import PostService
    from ripple.services.reposts import RepostService
    from ripple.services.users import UserService


class Container:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._models_bound = False

    # --- AWS
    def bind_models(self) -> None:
        """Point the PynamoDB models (process-wide) at this container's tables and endpoint,
        with X-Ray tracing their calls; once, before the first repository is built."""
        if self._models_bound:
            return
        from ripple.repositories.models import bind_models

        trace_aws_calls()
        bind_models(self.settings)
        self._models_bound = True

    # --- clients
    @cached_property
    def redis(self) -> redis.Redis:
        from ripple.cache.client import create_redis

        return create_redis(self.settings)

    @cached_property
    def jwt_secret(self) -> str:
        if self.settings.jwt_secret:
            return self.settings.jwt_secret
        if not self.settings.jwt_secret_arn:
            raise RuntimeError("set JWT_SECRET or JWT_SECRET_ARN")
        trace_aws_calls()
        from botocore.session import get_session  # PynamoDB's SDK: boto3 would add its import

        client = get_session().create_client(
            "secretsmanager",
            region_name=self.settings.region,
            endpoint_url=self.settings.secretsmanager_endpoint_url,
        )
        return str(client.get_secret_value(SecretId=self.settings.jwt_secret_arn)["SecretString"])

    # --- repositories and caches
    @cached_property
    def users(self) -> UserRepository:
        self.bind_models()
        from ripple.repositories.users import UserRepository

        return UserRepository()

    @cached_property
    def posts(self) -> PostRepository:
        self.bind_models()
        from ripple.repositories.posts import PostRepository

        return PostRepository(self.settings.feed_item_ttl_days * DAY)

    @cached_property
    def follows(self) -> FollowRepository:
        self.bind_models()
        from ripple.repositories.follows import FollowRepository

        return FollowRepository()

    @cached_property
    def feed(self) -> FeedRepository:
        self.bind_models()
        from ripple.repositories.feed import FeedRepository

        return FeedRepository(self.settings.feed_item_ttl_days * DAY)

    @cached_property
    def likes(self) -> LikeRepository:
        self.bind_models()
        from ripple.repositories.likes import LikeRepository

        return LikeRepository()

    @cached_property
    def reposts(self) -> RepostRepository:
        self.bind_models()
        from ripple.repositories.reposts import RepostRepository

        return RepostRepository()

    @cached_property
    def blocks(self) -> BlockRepository:
        self.bind_models()
        from ripple.repositories.blocks import BlockRepository

        return BlockRepository()

    @cached_property
    def notifications(self) -> NotificationRepository:
        self.bind_models()
        from ripple.repositories.notifications import NotificationRepository

        return NotificationRepository(self.settings.notification_ttl_days * DAY)

    @cached_property
    def refresh_tokens(self) -> RefreshTokenRepository:
        self.bind_models()
        from ripple.repositories.refresh_tokens import RefreshTokenRepository

        return RefreshTokenRepository()

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        from ripple.cache.rate_limit import RateLimiter

        return RateLimiter(self.redis)

    @cached_property
    def feed_cache(self) -> FeedCache:
        from ripple.cache.feed_cache import FeedCache

        return FeedCache(self.redis, self.settings.feed_cache_max_items, self.settings.feed_cache_ttl_seconds)

    @cached_property
    def outbox_cache(self) -> FeedCache:
        """High-follower authors' recent posts, for the readers who pull them."""
        from ripple.cache.feed_cache import OUTBOX_MAX_ITEMS, FeedCache, outbox_key

        return FeedCache(
            self.redis, OUTBOX_MAX_ITEMS, self.settings.feed_cache_ttl_seconds, key_of=outbox_key
        )

    @cached_property
    def timeline(self) -> TimelineCache:
        from ripple.cache.timeline import TimelineCache

        return TimelineCache(
            self.redis, self.known_users, self.settings.feed_cache_ttl_seconds, self.relations_cache
        )

    @cached_property
    def relations_cache(self) -> RelationsCache:
        from ripple.cache.relations import RelationsCache

        return RelationsCache(self.redis)

    @cached_property
    def known_users(self) -> KnownUsers:
        from ripple.cache.known_users import KnownUsers

        return KnownUsers(self.redis)

    @cached_property
    def liked_posts(self) -> LikedPosts:
        from ripple.cache.liked_posts import LikedPosts

        return LikedPosts(self.redis)

    @cached_property
    def post_cache(self) -> PostCache:
        from ripple.cache.post_cache import PostCache

        return PostCache(self.redis, self.settings.post_cache_ttl_seconds)

    # --- services
    @cached_property
    def tokens(self) -> TokenService:
        from ripple.auth.tokens import TokenService

        return TokenService(
            self.jwt_secret,
            self.settings.access_token_ttl_seconds,
            self.settings.refresh_token_ttl_seconds,
            leeway_seconds=self.settings.jwt_leeway_seconds,
        )

    @cached_property
    def accounts(self) -> AccountService:
        from ripple.auth.passwords import PasswordHasher
        from ripple.services.accounts import AccountService

        return AccountService(
            self.users,
            self.refresh_tokens,
            PasswordHasher(self.settings.password_scrypt_n),
            self.tokens,
            self.reader_activity,
            self.known_users,
            username_quarantine_ms=self.settings.username_quarantine_days * DAY * 1000,
        )

    @cached_property
    def reader_activity(self) -> ReaderActivity:
        from ripple.repositories.fanout_jobs import FanoutJobRepository
        from ripple.services.activity import ReaderActivity

        return ReaderActivity(
            self.users,
            FanoutJobRepository(),
            self.feed_cache,
            inactive_after_ms=self.settings.inactive_reader_days * DAY * 1000,
        )

    @cached_property
    def access(self) -> AccessGuard:
        from ripple.services.access import AccessGuard

        return AccessGuard(self.users, self.known_users, self.rate_limiter)

    @cached_property
    def user_service(self) -> UserService:
        from ripple.services.users import UserService

        return UserService(self.users)

    @cached_property
    def follow_service(self) -> FollowService:
        from ripple.services.follows import FollowService

        return FollowService(self.follows, self.users, self.timeline, self.relations)

    @cached_property
    def relations(self) -> RelationsReader:
        from ripple.services.blocks import RelationsReader

        return RelationsReader(self.blocks, self.relations_cache)

    @cached_property
    def block_service(self) -> BlockService:
        from ripple.services.blocks import BlockService

        return BlockService(self.blocks, self.users, self.relations_cache, self.timeline)

    @cached_property
    def post_service(self) -> PostService:
        from ripple.cache.writes import CacheWrites
        from ripple.services.posts import PostService

        return PostService(
            self.posts,
            self.likes,
            self.users,
            self.post_cache,
            CacheWrites(self.redis, self.feed_cache, self.post_cache, self.liked_posts),
            self.relations,
        )

    @cached_property
    def repost_service(self) -> RepostService:
        from ripple.repositories.fanout_jobs import FanoutJobRepository
        from ripple.services.reposts import RepostService

        return RepostService(
            self.posts,
            self.reposts,
            self.feed,
            self.post_cache,
            self.feed_cache,
            FanoutJobRepository(),
            self.likes,
            self.relations,
        )

    @cached_property
    def notification_service(self) -> NotificationService:
        from ripple.services.notifications import NotificationService

        return NotificationService(self.notifications)

    @cached_property
    def notification_producer(self) -> NotificationProducer:
        """The fan-out function's notifier; blocked and muted accounts notify nobody who
        blocks or mutes them (``ripple.services.notifications.unless_hidden``)."""
        from ripple.services.notifications import NotificationProducer, unless_hidden

        return NotificationProducer(
            self.notifications, self.posts.author_of, may_notify=unless_hidden(self.blocks)
        )

    @cached_property
    def feed_reader(self) -> FeedReader:
        from ripple.cache.views import PostViews
        from ripple.services.feed import FeedReader, PostHydrator, PulledAuthors

        return FeedReader(
            self.feed,
            self.feed_cache,
            PostHydrator(
                self.posts,
                self.likes,
                self.post_cache,
                PostViews(self.redis, self.post_cache, self.liked_posts),
            ),
            self.posts,
            PulledAuthors(self.users, self.follows),
            self.timeline,
            self.outbox_cache,
            self.users,
            self.relations,
        )

    @cached_property
    def health(self) -> HealthService:
        from ripple.repositories.health_probe import health_dynamodb_client
        from ripple.services.health import HealthService

        trace_aws_calls()
        return HealthService(
            dynamodb=health_dynamodb_client(self.settings.region, self.settings.dynamodb_endpoint_url),
            feed_table=self.settings.feed_table,
            redis_client=self.redis,
            feed=self.feed,
            feed_cache=self.feed_cache,
        )

    @cached_property
    def fanout(self) -> FanoutService:
        self.bind_models()
        from ripple.repositories.fanout_jobs import FanoutJobRepository
        from ripple.services.fanout import FanoutService

        return FanoutService(
            self.posts,
            self.follows,
            self.users,
            self.feed,
            FanoutJobRepository(),
            self.likes,
            self.blocks,
            self.reposts,
            backfill_posts=self.settings.backfill_posts,
            page_size=self.settings.fanout_page_size,
            high_follower_threshold=self.settings.high_follower_threshold,
            pull_grace_ms=self.settings.high_follower_pull_grace_seconds * 1000,
            inactive_after_ms=self.settings.inactive_reader_days * DAY * 1000,
        )

    @cached_property
    def fanout_consumer(self) -> FanoutConsumer:
        from ripple.services.fanout import FanoutConsumer

        return FanoutConsumer(
            self.fanout,
            self.erasure,
            self.settings.posts_table,
            self.settings.follows_table,
            self.settings.fanout_jobs_table,
            likes_table=self.settings.likes_table,
            reposts_table=self.settings.reposts_table,
            notifier=self.notification_producer,
        )

    @cached_property
    def erasure(self) -> AccountErasure:
        self.bind_models()
        from ripple.repositories.fanout_jobs import FanoutJobRepository
        from ripple.services.erasure import AccountErasure

        return AccountErasure(
            self.posts,
            self.likes,
            self.follows,
            self.feed,
            self.refresh_tokens,
            self.blocks,
            self.notifications,
            FanoutJobRepository(),
            self.reposts,
        )

    @cached_property
    def cache_refresher(self) -> CacheRefresher:
        from ripple.cache.pipelines import ScriptPipeline
        from ripple.services.cache_refresh import CacheRefresher, RefresherTables, RefreshTargets

        tables = RefresherTables(
            feed=self.settings.feed_table,
            posts=self.settings.posts_table,
            likes=self.settings.likes_table,
            users=self.settings.users_table,
        )
        targets = RefreshTargets(
            self.feed_cache, self.post_cache, self.outbox_cache, self.liked_posts, self.known_users, tables
        )
        return CacheRefresher(lambda: ScriptPipeline(self.redis), targets)


@lru_cache(maxsize=1)
def get_container() -> Container:
    """The container's one composition root, built on first use from the environment."""
    return Container(get_settings())
