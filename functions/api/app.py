"""The Ripple HTTP API: a Chalice app behind API Gateway.

Handlers are thin: parse the request, call one service, shape the response. Errors of
every kind leave as ``{"error": {"code", "message"}}`` (see ``ripple.http.errors``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from chalice import Chalice, ConvertToMiddleware, Response
from chalice.app import Request

from ripple import validation
from ripple.auth.tokens import Claims
from ripple.container import get_container
from ripple.domain import Page, Post
from ripple.http.errors import status_and_body, translate_chalice_body
from ripple.http.requests import bearer_token, parse_json_body
from ripple.observability import logger, metrics, tracer

app = Chalice(app_name="ripple")
container = get_container()
settings = container.settings

app.register_middleware(
    ConvertToMiddleware(logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST))
)
app.register_middleware(ConvertToMiddleware(tracer.capture_lambda_handler))
app.register_middleware(ConvertToMiddleware(metrics.log_metrics))


@app.middleware("http")
def error_shape(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Chalice's own errors (405, 415, ...) leave in Ripple's error shape too."""
    response = get_response(event)
    if response.status_code >= 400:
        translated = translate_chalice_body(response.body)
        if translated is not None:
            response.body = translated
    return response


def json_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Map any exception raised by a view to the JSON error shape (500s are logged)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Exception as exc:
            status, body = status_and_body(exc)
            if status >= 500:
                logger.exception("request failed", extra={"path": request().path})
            return Response(body=body, status_code=status)

    return wrapper


def request() -> Request:
    current = app.current_request
    assert current is not None, "only called while handling a request"
    return current


def body() -> Any:
    raw = request().raw_body
    return parse_json_body(raw.encode() if isinstance(raw, str) else raw, settings.max_body_bytes)


def authenticated() -> Claims:
    return container.tokens.verify(bearer_token(request().headers))


def query(name: str) -> str | None:
    params = request().query_params
    return None if params is None else params.get(name)


def page_of_posts(page: Page[Post]) -> dict[str, Any]:
    return {"items": [p.to_public() for p in page.items], "next_cursor": page.next_cursor}


# ------------------------------------------------------------------ auth
@app.route("/auth/signup", methods=["POST"])
@json_errors
def signup() -> Response:
    username, password = validation.credentials(body())
    session = container.accounts.signup(username, password)
    return Response(
        body={"user": session.user.to_public(), **session.tokens.to_public()},
        status_code=201,
    )


@app.route("/auth/login", methods=["POST"])
@json_errors
def login() -> dict[str, Any]:
    username, password = validation.credentials(body())
    session = container.accounts.login(username, password)
    return {"user": session.user.to_public(), **session.tokens.to_public()}


# ------------------------------------------------------------------ follows
@app.route("/users/{user_id}/follow", methods=["POST"])
@json_errors
def follow(user_id: str) -> dict[str, Any]:
    me = authenticated()
    followee = validation.entity_id(user_id, "user")
    created = container.follow_service.follow(me.user_id, followee)
    return {"following": True, "user_id": followee, "changed": created}


@app.route("/users/{user_id}/follow", methods=["DELETE"])
@json_errors
def unfollow(user_id: str) -> dict[str, Any]:
    me = authenticated()
    followee = validation.entity_id(user_id, "user")
    removed = container.follow_service.unfollow(me.user_id, followee)
    return {"following": False, "user_id": followee, "changed": removed}


# ------------------------------------------------------------------ posts
@app.route("/posts", methods=["POST"])
@json_errors
def create_post() -> Response:
    me = authenticated()
    text = validation.post_text(body(), max_chars=settings.post_max_chars)
    post = container.post_service.create(me.user_id, text)
    return Response(body=post.to_public(), status_code=201)


@app.route("/posts/{post_id}", methods=["GET"])
@json_errors
def get_post(post_id: str) -> dict[str, Any]:
    authenticated()
    return container.post_service.get(validation.entity_id(post_id, "post")).to_public()


@app.route("/posts/{post_id}", methods=["DELETE"])
@json_errors
def delete_post(post_id: str) -> Response:
    me = authenticated()
    container.post_service.delete(validation.entity_id(post_id, "post"), me.user_id, me.roles)
    return Response(body="", status_code=204)


# ------------------------------------------------------------------ feed
@app.route("/feed", methods=["GET"])
@json_errors
def home_feed() -> dict[str, Any]:
    me = authenticated()
    limit = validation.page_limit(query("limit"))
    return page_of_posts(container.feed_reader.home(me.user_id, limit, query("cursor")))


# ------------------------------------------------------------------ health
@app.route("/health/live", methods=["GET"])
def health_live() -> dict[str, Any]:
    return {"status": "ok"}
