"""The answer to a request that no route of the app matched: 404, or 405 with ``Allow``.

Chalice routes an event by ``requestContext.resourcePath`` alone - the path template of the
API Gateway route that matched (``/posts/{post_id}``), never the raw path. A REST API invokes
the function only for the routes template.yaml declares; API Gateway answers everything else
itself (its GatewayResponses put that in Ripple's error shape). An HTTP API
(``ApiType=HTTP``) cannot shape its own answers, so its catch-all routes, ``ANY /`` and
``ANY /{proxy+}``, hand the function every request no explicit route matched, with
``resourcePath`` "/" or "/{proxy+}" and ``pathParameters`` ``{"proxy": "rest/of/path"}``.
Chalice itself would answer those 405 ``MethodNotAllowedError`` with an empty ``Allow``
(``app.routes`` is a defaultdict: the unknown resource has no methods; aws/chalice#1959).
Here the raw path is matched against the app's route templates instead: a path some route
has is 405 with that route's methods, any other path 404 - as the local server answers
(infra/local/ripple_local/api_server.py uses the same constants).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ripple.http.errors import error_body

__all__ = [
    "CATCH_ALL_ROUTES",
    "METHOD_NOT_ALLOWED",
    "NO_ROUTE",
    "allowed_methods",
    "request_path",
    "unrouted_response",
]

# The HTTP API's catch-all routes (template.yaml, RippleHttpApi). A greedy ``{proxy+}`` needs
# at least one segment, so the root path needs a route of its own.
CATCH_ALL_ROUTES = ("/", "/{proxy+}")

# (status, code, message). Static messages: nothing of the request is ever repeated (it may
# carry a credential). NO_ROUTE is also template.yaml's MISSING_AUTHENTICATION_TOKEN answer.
NO_ROUTE = (404, "not_found", "no route matches this method and path")
METHOD_NOT_ALLOWED = (405, "method_not_allowed", "the route does not allow this method (see Allow)")


def request_path(resource_path: str, path_parameters: Mapping[str, str] | None) -> str:
    """The request's path below the stage, rebuilt from a catch-all route's event.

    ``/{proxy+}`` carries the rest of the path in ``pathParameters.proxy`` (without the stage
    prefix, whatever the stage is called); ``/`` is the root. Any other resource path is a
    template and is returned as it is.
    """
    if resource_path == "/{proxy+}":
        return "/" + (path_parameters or {}).get("proxy", "")
    return resource_path


def _matches(template: str, path: str) -> bool:
    """``/posts/{post_id}`` matches ``/posts/01J...``: a ``{name}`` is one non-empty segment."""
    wanted, given = template.split("/"), path.split("/")
    if len(wanted) != len(given):
        return False
    for want, got in zip(wanted, given, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return False
        elif want != got:
            return False
    return True


def allowed_methods(routes: Mapping[str, Iterable[str]], path: str) -> list[str] | None:
    """The methods of every route template ``path`` matches (sorted), None if none does.

    ``routes`` maps a template to its methods (``app.routes``). Templates that overlap
    (``/users/by-name/{username}`` and ``/users/{user_id}/follow`` both match
    ``/users/by-name/follow``) give the union: API Gateway would route each of those methods.
    """
    methods = {m.upper() for template, ms in routes.items() if ms and _matches(template, path) for m in ms}
    return sorted(methods) if methods else None


def unrouted_response(
    routes: Mapping[str, Iterable[str]],
    resource_path: str,
    path_parameters: Mapping[str, str] | None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for a request whose resource path is none of ``routes``."""
    allowed = allowed_methods(routes, request_path(resource_path, path_parameters))
    if allowed is None:
        status, code, message = NO_ROUTE
        return status, error_body(code, message), {}
    status, code, message = METHOD_NOT_ALLOWED
    return status, error_body(code, message), {"Allow": ", ".join(allowed)}
