"""The API function behind an HTTP API (``ApiType=HTTP``): Lambda proxy payload format 1.0.

events/http_api/ holds payload-1.0 events in the shape of AWS's example (API Gateway developer
guide, "Create AWS Lambda proxy integrations for HTTP APIs": ``version``, ``resource``,
``path``, ``multiValueHeaders``, ``multiValueQueryStringParameters``, ``requestContext``
with ``httpMethod``, ``identity.sourceIp``, ``resourcePath``, ``stage``). For a declared route
``requestContext.resourcePath`` is the route's path template and ``resourceId`` its route key,
as events captured from HTTP APIs show (``"resourceId": "ANY /{proxy+}", "resourcePath":
"/{proxy+}"``; a ``$default`` route gives ``"resourcePath": "$default"``). Chalice reads
``resourcePath``, ``httpMethod``, ``pathParameters`` and the multi-value fields, never
``resource`` or ``version``.

The app is imported and invoked in a child process (as test_openapi.chalice_routes does), so
this process's container stays unbuilt; neither event reaches a table or Redis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events" / "http_api"

_PROBE = r"""
import importlib.util, json, sys
from ripple_local.lambda_context import LambdaContext

spec = importlib.util.spec_from_file_location("api_app", "functions/api/app.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
app = module.app
before = sorted(app.routes)
answers = []
for event in json.loads(sys.argv[1]):
    context = LambdaContext("ApiFunction", "arn:aws:lambda:us-east-1:123456789012:function:api", 512, 30)
    answers.append(app(event, context))
print(json.dumps({"answers": answers, "routes_unchanged": sorted(app.routes) == before}))
"""


def invoke(*events: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The app's proxy responses to ``events``, and whether ``app.routes`` stayed as it was."""
    env = {
        "JWT_SECRET": "x" * 40,
        "PYTHONPATH": f"{ROOT / 'layers/ripple'}:{ROOT / 'infra/local'}",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(events)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["answers"], result["routes_unchanged"]


def event(name: str, method: str | None = None, proxy: str | None = None) -> dict[str, Any]:
    """A sample event; ``method`` and ``proxy`` (the path below the stage) replace its own."""
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    if method is not None:
        loaded["httpMethod"] = loaded["requestContext"]["httpMethod"] = method
    if proxy is not None:
        loaded["pathParameters"] = {"proxy": proxy}
        loaded["path"] = f"/{proxy}"
        loaded["requestContext"]["path"] = f"/{loaded['requestContext']['stage']}/{proxy}"
    return loaded


def test_a_declared_route_is_served_from_a_payload_1_0_event() -> None:
    (answer,), _ = invoke(event("health_live"))
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"status": "ok"}


def test_what_no_route_matched_is_404_or_405_with_allow_in_the_error_shape() -> None:
    # Given requests HTTP API's catch-all routes hand over (no explicit route matched them)
    root = event("catch_all", method="GET")
    root["requestContext"]["resourcePath"] = root["resource"] = "/"
    root["pathParameters"] = None
    answers, routes_unchanged = invoke(
        event("catch_all"),  # PUT /posts/{id}: the path has GET and DELETE
        event("catch_all", method="HEAD", proxy="feed"),
        event("catch_all", method="GET", proxy="no/such/route"),
        root,
    )
    # Then a known path is 405 with its methods, anything else 404, always in the error shape
    statuses = [a["statusCode"] for a in answers]
    assert statuses == [405, 405, 404, 404]
    assert answers[0]["headers"]["Allow"] == "DELETE, GET"
    assert answers[1]["headers"]["Allow"] == "GET"
    codes = [json.loads(a["body"])["error"]["code"] for a in answers]
    assert codes == ["method_not_allowed", "method_not_allowed", "not_found", "not_found"]
    # And no answer repeats the caller's token; Chalice's route table gained no entry
    assert all("header.payload.signature" not in json.dumps(a) for a in answers)
    assert routes_unchanged
