"""One typed view of the environment, read once per container (cold start).

Logic never reads ``os.environ``: it receives a :class:`Settings` (or calls
:func:`get_settings`), so tests can build settings explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def _non_negative(value: int, name: str) -> int:
    if value < 0:
        raise ValueError(f"environment variable {name} must not be negative, got {value}")
    return value


def _endpoint(env: Mapping[str, str], service_variable: str) -> str | None:
    """A service's endpoint: ``AWS_ENDPOINT_URL_<SERVICE>``, else ``AWS_ENDPOINT_URL``, else
    None (AWS's own). The same names and order as the AWS SDKs' service-specific endpoints,
    resolved here once so every client (boto3 or PynamoDB) gets it explicitly: a local stack
    can put DynamoDB on DynamoDB Local and Secrets Manager on moto, or on real AWS."""
    return env.get(f"AWS_ENDPOINT_URL_{service_variable}") or env.get("AWS_ENDPOINT_URL") or None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything configurable about Ripple, with the defaults a small deployment wants."""

    stage: str = "dev"
    region: str = "us-east-1"
    # None on AWS; locally the emulators' URLs (see _endpoint).
    dynamodb_endpoint_url: str | None = None
    secretsmanager_endpoint_url: str | None = None
    users_table: str = "ripple-users"
    usernames_table: str = "ripple-usernames"
    posts_table: str = "ripple-posts"
    post_ids_table: str = "ripple-post-ids"
    follows_table: str = "ripple-follows"
    followers_table: str = "ripple-followers"
    feed_table: str = "ripple-feed"
    likes_table: str = "ripple-likes"
    fanout_jobs_table: str = "ripple-fanout-jobs"
    refresh_tokens_table: str = "ripple-refresh-tokens"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_tls: bool = False
    # Short socket timeouts: a slow Redis must degrade reads to DynamoDB, not stall them.
    redis_timeout_seconds: float = 0.25
    jwt_secret: str | None = None
    jwt_secret_arn: str | None = None
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Clock skew tolerated between the container that issued a token and the one verifying
    # it, for iat, nbf and exp (RFC 7519 4.1.4-4.1.6 allow "some small leeway").
    jwt_leeway_seconds: int = 10
    # Mastodon keeps 800 ids per home feed: enough for days of reading, small in memory.
    feed_cache_max_items: int = 800
    feed_cache_ttl_seconds: int = 7 * 24 * 3600
    post_cache_ttl_seconds: int = 24 * 3600
    backfill_posts: int = 20
    # Above this many followers an author's posts are pulled at read time, not pushed.
    high_follower_threshold: int = 10_000
    # Posts made this soon after their author was marked high-follower are still pushed: it
    # covers the readers' reload of the pulled-author registry (10 s, services/feed.py) and
    # the registry index's lag (typically well under a second) several times over.
    high_follower_pull_grace_seconds: int = 60
    # Followers written per fan-out step; more continue as a follow-up job record.
    fanout_page_size: int = 1000
    post_max_chars: int = 500
    max_body_bytes: int = 16 * 1024
    # scrypt cost; 2**14 is the interactive-login recommendation (RFC 7914).
    password_scrypt_n: int = 2**14
    # Requests accepted in any 60-second span (a moving window in Redis, ripple.cache.rate_limit);
    # 0 disables a limit.
    rate_limit_writes_per_minute: int = 60
    rate_limit_ip_writes_per_minute: int = 300
    rate_limit_auth_per_minute: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables (names as in template.yaml)."""
        e = os.environ if env is None else env
        d = cls()
        return cls(
            stage=e.get("STAGE", d.stage),
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or d.region,
            dynamodb_endpoint_url=_endpoint(e, "DYNAMODB"),
            secretsmanager_endpoint_url=_endpoint(e, "SECRETS_MANAGER"),
            users_table=e.get("USERS_TABLE", d.users_table),
            usernames_table=e.get("USERNAMES_TABLE", d.usernames_table),
            posts_table=e.get("POSTS_TABLE", d.posts_table),
            post_ids_table=e.get("POST_IDS_TABLE", d.post_ids_table),
            follows_table=e.get("FOLLOWS_TABLE", d.follows_table),
            followers_table=e.get("FOLLOWERS_TABLE", d.followers_table),
            feed_table=e.get("FEED_TABLE", d.feed_table),
            likes_table=e.get("LIKES_TABLE", d.likes_table),
            fanout_jobs_table=e.get("FANOUT_JOBS_TABLE", d.fanout_jobs_table),
            refresh_tokens_table=e.get("REFRESH_TOKENS_TABLE", d.refresh_tokens_table),
            redis_host=e.get("REDIS_HOST", d.redis_host),
            redis_port=_int(e, "REDIS_PORT", d.redis_port),
            redis_tls=_bool(e, "REDIS_TLS", d.redis_tls),
            redis_timeout_seconds=float(e.get("REDIS_TIMEOUT_SECONDS") or d.redis_timeout_seconds),
            jwt_secret=e.get("JWT_SECRET") or None,
            jwt_secret_arn=e.get("JWT_SECRET_ARN") or None,
            access_token_ttl_seconds=_int(e, "ACCESS_TOKEN_TTL_SECONDS", d.access_token_ttl_seconds),
            refresh_token_ttl_seconds=_int(e, "REFRESH_TOKEN_TTL_SECONDS", d.refresh_token_ttl_seconds),
            jwt_leeway_seconds=_non_negative(
                _int(e, "JWT_LEEWAY_SECONDS", d.jwt_leeway_seconds), "JWT_LEEWAY_SECONDS"
            ),
            feed_cache_max_items=_int(e, "FEED_CACHE_MAX_ITEMS", d.feed_cache_max_items),
            feed_cache_ttl_seconds=_int(e, "FEED_CACHE_TTL_SECONDS", d.feed_cache_ttl_seconds),
            post_cache_ttl_seconds=_int(e, "POST_CACHE_TTL_SECONDS", d.post_cache_ttl_seconds),
            backfill_posts=_int(e, "BACKFILL_POSTS", d.backfill_posts),
            high_follower_threshold=_int(e, "HIGH_FOLLOWER_THRESHOLD", d.high_follower_threshold),
            fanout_page_size=_int(e, "FANOUT_PAGE_SIZE", d.fanout_page_size),
            high_follower_pull_grace_seconds=_int(
                e, "HIGH_FOLLOWER_PULL_GRACE_SECONDS", d.high_follower_pull_grace_seconds
            ),
            post_max_chars=_int(e, "POST_MAX_CHARS", d.post_max_chars),
            max_body_bytes=_int(e, "MAX_BODY_BYTES", d.max_body_bytes),
            password_scrypt_n=_int(e, "PASSWORD_SCRYPT_N", d.password_scrypt_n),
            rate_limit_writes_per_minute=_int(
                e, "RATE_LIMIT_WRITES_PER_MINUTE", d.rate_limit_writes_per_minute
            ),
            rate_limit_ip_writes_per_minute=_int(
                e, "RATE_LIMIT_IP_WRITES_PER_MINUTE", d.rate_limit_ip_writes_per_minute
            ),
            rate_limit_auth_per_minute=_int(e, "RATE_LIMIT_AUTH_PER_MINUTE", d.rate_limit_auth_per_minute),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The container's settings, read from the environment on first use only."""
    return Settings.from_env()
