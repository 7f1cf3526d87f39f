"""The Ripple HTTP API: a Chalice app behind API Gateway.

Handlers are thin: authenticate, rate-limit, validate, call one service, shape the
response. Errors of every kind leave as ``{"error": {"code", "message"}}``
(``ripple.http.errors``). The routes here, ``openapi.json`` beside this file and the routes
of template.yaml's two APIs (REST and HTTP, the ApiType parameter) are kept identical by tests.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from chalice import Chalice, ConvertToMiddleware, Response
from chalice.app import Request

from ripple import validation
from ripple.auth.tokens import Claims
from ripple.cache.rate_limit import Limit
from ripple.container import get_container
from ripple.domain import BLOCK, MUTE, Page, Post, User
from ripple.errors import ForbiddenError, NotFoundError, ValidationError
from ripple.http.errors import status_and_body, translate_chalice_body
from ripple.http.instrumentation import record_request, route_template
from ripple.http.requests import bearer_token, parse_json_body
from ripple.http.responses import json_text
from ripple.http.routing import unrouted_response
from ripple.observability import logger, metrics, tracer

app = Chalice(app_name="ripple")
container = get_container()
settings = container.settings
# Built at cold start, in Lambda's init phase, rather than by the first request: the caller
# check every authenticated request makes (Redis, then DynamoDB: redis, PynamoDB, botocore).
_ = container.access
OPENAPI = json.loads((Path(__file__).parent / "openapi.json").read_text())

WRITES_PER_USER = Limit("writes:user", settings.rate_limit_writes_per_minute)
WRITES_PER_IP = Limit("writes:ip", settings.rate_limit_ip_writes_per_minute)
AUTH_PER_IP = Limit("auth:ip", settings.rate_limit_auth_per_minute)

app.register_middleware(
    ConvertToMiddleware(logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST))
)
app.register_middleware(ConvertToMiddleware(tracer.capture_lambda_handler))
app.register_middleware(ConvertToMiddleware(metrics.log_metrics))


@app.middleware("http")
def request_metrics(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Count and time every request by route template (never the raw path), method and status."""
    started = time.perf_counter()
    status = 500  # if get_response raises, Chalice answers 500
    try:
        response = get_response(event)
        status = response.status_code
        return response
    finally:
        record_request(
            route_template(event.context), event.method, status, (time.perf_counter() - started) * 1000
        )


@app.middleware("http")
def response_shape(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Chalice's own errors (405, 415, ...) leave in Ripple's error shape too; every body
    leaves as JSON text written here (ripple.http.responses), not by Chalice."""
    response = get_response(event)
    if response.status_code >= 400:
        translated = translate_chalice_body(response.body)
        if translated is not None:
            response.body = translated
    try:
        response.body = json_text(response.body)
    except TypeError as exc:  # a view returned what JSON cannot carry: a bug, logged, not sent
        logger.exception("response body is not JSON", extra={"path": event.path})
        status, payload, headers = status_and_body(exc)
        return Response(body=json_text(payload), status_code=status, headers=dict(headers))
    return response


@app.middleware("http")
def unrouted(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """A request no route of the app matched - an HTTP API's catch-all routes send those
    (template.yaml) - is 404, or 405 with ``Allow``, in the error shape (ripple.http.routing).
    Registered last, so it runs innermost: Chalice never sees the unknown resource path."""
    if event.path in app.routes:  # ``in`` does not add the key to the defaultdict
        return get_response(event)
    status, payload, headers = unrouted_response(app.routes, event.path, event.uri_params)
    return Response(body=payload, status_code=status, headers=dict(headers))


def json_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Map any exception raised by a view to the JSON error shape (500s are logged)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Exception as exc:
            status, body, headers = status_and_body(exc)
            if status >= 500:
                logger.exception("request failed", extra={"path": request().path})
            return Response(body=body, status_code=status, headers=dict(headers))

    return wrapper


# ------------------------------------------------------------------ request helpers
def request() -> Request:
    current = app.current_request
    assert current is not None, "only called while handling a request"
    return current


def body() -> Any:
    raw = request().raw_body
    return parse_json_body(raw.encode() if isinstance(raw, str) else raw, settings.max_body_bytes)


def source_ip() -> str:
    identity = request().context.get("identity") or {}
    return str(identity.get("sourceIp") or "unknown")


def authenticated() -> Claims:
    """The caller's verified token; their account must still exist (a token can outlive it)."""
    claims = container.tokens.verify(bearer_token(request().headers))
    container.access.admit(claims.user_id)
    return claims


def writer() -> Claims:
    """An authenticated user about to write: counted against the per-user and per-IP limits
    in the same round trip that checks the account."""
    claims = container.tokens.verify(bearer_token(request().headers))
    container.access.admit(claims.user_id, [(WRITES_PER_USER, claims.user_id), (WRITES_PER_IP, source_ip())])
    return claims


def auth_attempt() -> None:
    container.rate_limiter.check(AUTH_PER_IP, source_ip())


def query(name: str) -> str | None:
    params = request().query_params
    return None if params is None else params.get(name)


def posts_page(page: Page[Post]) -> dict[str, Any]:
    return {"items": [p.to_public() for p in page.items], "next_cursor": page.next_cursor}


def users_page(page: Page[User]) -> dict[str, Any]:
    return {"items": [u.to_public() for u in page.items], "next_cursor": page.next_cursor}


def relation_change(
    user_id: str, change: Callable[[str, str], bool], state: str, now: bool
) -> dict[str, Any]:
    """A follow, block or mute made or undone by the caller (a writer) on ``user_id``: the
    service's ``change(caller, target)`` says whether anything changed (all are idempotent).
    Answers ``{state: now, "user_id", "changed"}``."""
    claims = writer()
    target = user_id_param(user_id)
    return {state: now, "user_id": target, "changed": change(claims.user_id, target)}


def user_id_param(value: str) -> str:
    return validation.entity_id(value, "user")


def post_id_param(value: str) -> str:
    return validation.entity_id(value, "post")


# ------------------------------------------------------------------ auth
@app.route("/auth/signup", methods=["POST"])
@json_errors
def signup() -> Response:
    auth_attempt()
    username, password = validation.signup_credentials(body())
    session = container.accounts.signup(username, password)
    return Response(body={"user": session.user.to_public(), **session.tokens.to_public()}, status_code=201)


@app.route("/auth/login", methods=["POST"])
@json_errors
def login() -> dict[str, Any]:
    auth_attempt()
    username, password = validation.login_credentials(body())
    session = container.accounts.login(username, password)
    return {"user": session.user.to_public(), **session.tokens.to_public()}


@app.route("/auth/refresh", methods=["POST"])
@json_errors
def refresh() -> dict[str, Any]:
    auth_attempt()
    session = container.accounts.refresh(validation.refresh_token(body()))
    return {"user": session.user.to_public(), **session.tokens.to_public()}


@app.route("/auth/logout", methods=["POST"])
@json_errors
def logout() -> Response:
    auth_attempt()
    container.accounts.logout(validation.refresh_token(body()))
    return Response(body="", status_code=204)


# ------------------------------------------------------------------ users
@app.route("/me", methods=["GET"])
@json_errors
def me() -> dict[str, Any]:
    return container.user_service.me(authenticated().user_id).to_public()


@app.route("/me", methods=["PATCH"])
@json_errors
def update_me() -> dict[str, Any]:
    claims = writer()
    display_name, bio = validation.profile_update(body())
    return container.user_service.update_profile(claims.user_id, display_name, bio).to_public()


@app.route("/me", methods=["DELETE"])
@json_errors
def delete_me() -> Response:
    claims = writer()
    auth_attempt()  # a password is checked: the per-IP limit of logins applies too
    container.accounts.delete(claims.user_id, validation.account_deletion(body()))
    return Response(body="", status_code=204)


@app.route("/users/{user_id}", methods=["GET"])
@json_errors
def get_user(user_id: str) -> dict[str, Any]:
    authenticated()
    return container.user_service.get(user_id_param(user_id)).to_public()


@app.route("/users/by-name/{username}", methods=["GET"])
@json_errors
def get_user_by_name(username: str) -> dict[str, Any]:
    authenticated()
    try:
        name = validation.username(username)
    except ValidationError as exc:  # a name that cannot exist is simply not found
        raise NotFoundError("no user has that name") from exc
    return container.user_service.by_username(name).to_public()


# ------------------------------------------------------------------ follows
@app.route("/users/{user_id}/follow", methods=["POST"])
@json_errors
def follow(user_id: str) -> dict[str, Any]:
    return relation_change(user_id, container.follow_service.follow, "following", True)


@app.route("/users/{user_id}/follow", methods=["DELETE"])
@json_errors
def unfollow(user_id: str) -> dict[str, Any]:
    return relation_change(user_id, container.follow_service.unfollow, "following", False)


@app.route("/users/{user_id}/followers", methods=["GET"])
@json_errors
def followers(user_id: str) -> dict[str, Any]:
    claims = authenticated()
    limit = validation.page_limit(query("limit"))
    page = container.follow_service.followers(user_id_param(user_id), limit, query("cursor"), claims.user_id)
    return users_page(page)


@app.route("/users/{user_id}/following", methods=["GET"])
@json_errors
def following(user_id: str) -> dict[str, Any]:
    claims = authenticated()
    limit = validation.page_limit(query("limit"))
    page = container.follow_service.following(user_id_param(user_id), limit, query("cursor"), claims.user_id)
    return users_page(page)


# ------------------------------------------------------------------ blocks and mutes
@app.route("/users/{user_id}/block", methods=["POST"])
@json_errors
def block(user_id: str) -> dict[str, Any]:
    return relation_change(user_id, container.block_service.block, "blocking", True)


@app.route("/users/{user_id}/block", methods=["DELETE"])
@json_errors
def unblock(user_id: str) -> dict[str, Any]:
    return relation_change(user_id, container.block_service.unblock, "blocking", False)


@app.route("/users/{user_id}/mute", methods=["POST"])
@json_errors
def mute(user_id: str) -> dict[str, Any]:
    return relation_change(user_id, container.block_service.mute, "muting", True)


@app.route("/users/{user_id}/mute", methods=["DELETE"])
@json_errors
def unmute(user_id: str) -> dict[str, Any]:
    return relation_change(user_id, container.block_service.unmute, "muting", False)


@app.route("/me/blocks", methods=["GET"])
@json_errors
def my_blocks() -> dict[str, Any]:
    claims = authenticated()
    limit = validation.page_limit(query("limit"))
    return users_page(container.block_service.listing(claims.user_id, BLOCK, limit, query("cursor")))


@app.route("/me/mutes", methods=["GET"])
@json_errors
def my_mutes() -> dict[str, Any]:
    claims = authenticated()
    limit = validation.page_limit(query("limit"))
    return users_page(container.block_service.listing(claims.user_id, MUTE, limit, query("cursor")))


# ------------------------------------------------------------------ posts
@app.route("/users/{user_id}/posts", methods=["GET"])
@json_errors
def user_posts(user_id: str) -> dict[str, Any]:
    claims = authenticated()
    limit = validation.page_limit(query("limit"))
    page = container.post_service.by_author(user_id_param(user_id), limit, query("cursor"), claims.user_id)
    return posts_page(page)


@app.route("/posts", methods=["POST"])
@json_errors
def create_post() -> Response:
    claims = writer()
    text = validation.post_text(body(), max_chars=settings.post_max_chars)
    post = container.post_service.create(claims.user_id, text)
    return Response(body=post.for_reader(False).to_public(), status_code=201)  # nobody has liked it yet


@app.route("/posts/{post_id}", methods=["GET"])
@json_errors
def get_post(post_id: str) -> dict[str, Any]:
    claims = authenticated()
    return container.post_service.get(post_id_param(post_id), claims.user_id).to_public()


@app.route("/posts/{post_id}", methods=["DELETE"])
@json_errors
def delete_post(post_id: str) -> Response:
    claims = writer()
    container.post_service.delete(post_id_param(post_id), claims.user_id, claims.roles)
    return Response(body="", status_code=204)


@app.route("/posts/{post_id}/like", methods=["POST"])
@json_errors
def like(post_id: str) -> dict[str, Any]:
    claims = writer()
    return container.post_service.like(claims.user_id, post_id_param(post_id)).for_reader(True).to_public()


@app.route("/posts/{post_id}/like", methods=["DELETE"])
@json_errors
def unlike(post_id: str) -> dict[str, Any]:
    claims = writer()
    return container.post_service.unlike(claims.user_id, post_id_param(post_id)).for_reader(False).to_public()


@app.route("/posts/{post_id}/repost", methods=["POST"])
@json_errors
def repost(post_id: str) -> dict[str, Any]:
    claims = writer()
    return container.repost_service.repost(claims.user_id, post_id_param(post_id)).to_public()


@app.route("/posts/{post_id}/repost", methods=["DELETE"])
@json_errors
def unrepost(post_id: str) -> dict[str, Any]:
    claims = writer()
    return container.repost_service.unrepost(claims.user_id, post_id_param(post_id)).to_public()


# ------------------------------------------------------------------ feed
@app.route("/feed", methods=["GET"])
@json_errors
def home_feed() -> dict[str, Any] | Response:
    # The account check rides on the timeline's first round trip (ripple.cache.timeline).
    claims = container.tokens.verify(bearer_token(request().headers))
    limit = validation.page_limit(query("limit"))
    page = container.feed_reader.home(
        claims.user_id,
        limit,
        query("cursor"),
        account_check=functools.partial(container.access.confirm, claims.user_id),
    )
    if page.partial:  # rebuilding after a long absence (ripple.services.activity): as Mastodon, 206
        return Response(body={**posts_page(page), "rebuilding": True}, status_code=206)
    return posts_page(page)


# ------------------------------------------------------------------ notifications
@app.route("/notifications", methods=["GET"])
@json_errors
def notifications() -> dict[str, Any]:
    claims = authenticated()
    limit = validation.page_limit(query("limit"))
    page = container.notification_service.page(claims.user_id, limit, query("cursor"))
    return {
        "items": [n.to_public() for n in page.items],
        "next_cursor": page.next_cursor,
        "unread_count": page.unread_count,
    }


@app.route("/notifications/read", methods=["POST"])
@json_errors
def mark_notifications_read() -> dict[str, Any]:
    claims = writer()
    return {"unread_count": container.notification_service.mark_read(claims.user_id)}


# ------------------------------------------------------------------ meta
@app.route("/openapi.json", methods=["GET"])
def openapi() -> dict[str, Any]:
    return OPENAPI


@app.route("/health/live", methods=["GET"])
def health_live() -> dict[str, Any]:
    return {"status": "ok"}


@app.route("/health/ready", methods=["GET"])
def health_ready() -> Response:
    status, body = container.health.ready()
    return Response(body=body, status_code=status)


@app.route("/health/deep", methods=["GET"])
@json_errors
def health_deep() -> Response:
    # Admin only: it writes to DynamoDB and can hold an invocation for up to 10 s.
    claims = authenticated()
    if "admin" not in claims.roles:
        raise ForbiddenError("the deep health check is for admins")
    status, body = container.health.deep()
    return Response(body=body, status_code=status)
