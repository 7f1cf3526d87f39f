"""Finding functions and stream events in the template, importing handlers, Lambda contexts."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ripple_local.cfn import load_template
from ripple_local.functions import function_names, load_handler, module_name, stream_event_sources
from ripple_local.lambda_context import LambdaContextFactory

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def test_function_names_in_template_order(template: dict[str, Any]) -> None:
    assert function_names(template) == ["ApiFunction", "FanoutFunction", "CacheRefresherFunction"]


def test_stream_event_sources_list_every_dynamodb_event(template: dict[str, Any]) -> None:
    sources = stream_event_sources(template)
    assert [(s.function_id, s.event_name) for s in sources] == [
        ("FanoutFunction", "PostsStream"),
        ("FanoutFunction", "JobsStream"),
        ("FanoutFunction", "FollowsStream"),
        ("FanoutFunction", "RepostsStream"),
        ("FanoutFunction", "LikesStream"),
        ("CacheRefresherFunction", "PostsStream"),
        ("CacheRefresherFunction", "FeedStream"),
        ("CacheRefresherFunction", "LikesStream"),
        ("CacheRefresherFunction", "UsersStream"),
    ]
    feed = sources[6].properties
    assert feed["BatchSize"] == 100 and feed["MaximumRetryAttempts"] == 5
    assert feed["Stream"] == {"Fn::GetAtt": ["FeedTable", "StreamArn"]}


def _function_dir(tmp_path: Path, body: str) -> tuple[dict[str, Any], str]:
    """A one-function template whose code lives in tmp_path/fn/app.py."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(body)
    logical_id = f"Fn{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {
            logical_id: {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "fn", "Handler": "app.handler"},
            }
        }
    }
    return template, logical_id


def test_handler_is_imported_under_a_unique_module_name(tmp_path: Path) -> None:
    template, logical_id = _function_dir(
        tmp_path, "CALLS = []\ndef handler(event, context):\n    return 'ok'\n"
    )
    try:
        handler = load_handler(template, logical_id, tmp_path)
        assert handler({}, None) == "ok"
        assert handler.__module__ == module_name(logical_id) == f"ripple_fn_{logical_id}"
        assert "app" not in sys.modules or sys.modules["app"].__file__ != str(tmp_path / "fn" / "app.py")
        # imported once: a second load returns the same object, fresh=True re-executes
        assert load_handler(template, logical_id, tmp_path) is handler
        assert load_handler(template, logical_id, tmp_path, fresh=True) is not handler
    finally:
        sys.modules.pop(module_name(logical_id), None)


def test_missing_handler_attribute_is_a_clear_error(tmp_path: Path) -> None:
    template, logical_id = _function_dir(tmp_path, "x = 1\n")
    try:
        with pytest.raises(AttributeError, match="no attribute 'handler'"):
            load_handler(template, logical_id, tmp_path)
    finally:
        sys.modules.pop(module_name(logical_id), None)


def test_failing_import_leaves_no_half_module(tmp_path: Path) -> None:
    template, logical_id = _function_dir(tmp_path, "raise RuntimeError('boom')\n")
    with pytest.raises(RuntimeError, match="boom"):
        load_handler(template, logical_id, tmp_path)
    assert module_name(logical_id) not in sys.modules


def test_context_uses_function_timeout_or_globals(template: dict[str, Any]) -> None:
    fanout = LambdaContextFactory.from_template(template, "FanoutFunction", "ripple-local")
    refresher = LambdaContextFactory.from_template(template, "CacheRefresherFunction", "ripple-local")
    first, second = fanout(), fanout()
    assert first.function_name == "ripple-local-FanoutFunction"
    assert (
        first.invoked_function_arn
        == "arn:aws:lambda:us-east-1:123456789012:function:ripple-local-FanoutFunction"
    )
    assert first.memory_limit_in_mb == 512 and first.function_version == "$LATEST"
    assert first.log_group_name == "/aws/lambda/ripple-local-FanoutFunction"
    assert first.aws_request_id != second.aws_request_id
    assert 119_000 < first.get_remaining_time_in_millis() <= 120_000
    assert 29_000 < refresher().get_remaining_time_in_millis() <= 30_000
