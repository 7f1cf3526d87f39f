"""template.yaml is valid and matches the code: functions 1:1 with functions/, each API's
routes 1:1 with the Chalice routes, every stream consumer configured for partial failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ripple.http.routing import CATCH_ALL_ROUTES
from ripple_local.cfn import load_template
from ripple_local.functions import function_names, stream_event_sources
from tests.unit.test_openapi import chalice_routes, template_routes

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def test_cfn_lint_is_clean() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_function_folder_per_template_function() -> None:
    code_uris = {RESOURCES[f]["Properties"]["CodeUri"] for f in function_names(TEMPLATE)}
    folders = {f"functions/{p.name}" for p in (ROOT / "functions").iterdir() if p.is_dir()}
    assert code_uris == folders
    for function_id in function_names(TEMPLATE):
        props = RESOURCES[function_id]["Properties"]
        module = props["Handler"].split(".")[0]
        assert (ROOT / props["CodeUri"] / f"{module}.py").is_file()


def test_layer_is_the_ripple_package() -> None:
    layer = RESOURCES["RippleLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/ripple"
    assert layer["Metadata"]["BuildMethod"] == "makefile"  # layers/ripple/Makefile
    assert "build-RippleLayer:" in (ROOT / "layers/ripple/Makefile").read_text()
    assert (ROOT / "layers/ripple/ripple/__init__.py").is_file()
    assert (ROOT / "layers/ripple/requirements.txt").is_file()


def test_every_stream_consumer_reports_partial_failures_and_parks_poison() -> None:
    sources = stream_event_sources(TEMPLATE)
    assert {s.function_id for s in sources} == {"FanoutFunction", "CacheRefresherFunction"}
    for source in sources:
        props = source.properties
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["BisectBatchOnFunctionError"] is True
        assert 0 <= props["MaximumRetryAttempts"] <= 10
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["StreamFailureQueue", "Arn"]
        }
        table = props["Stream"]["Fn::GetAtt"][0]
        view = RESOURCES[table]["Properties"]["StreamSpecification"]["StreamViewType"]
        # Images where the consumer reads the row (the likes stream's too: the notifier reads
        # a removed like's time and recipient); of the users stream the refresher needs only
        # which account was deleted.
        keys_only = {"UsersTable"}
        assert view in ({"KEYS_ONLY"} if table in keys_only else {"NEW_IMAGE", "NEW_AND_OLD_IMAGES"})


# ------------------------------------------------------------------ the front door (ApiType)
REST_URI = (
    "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
    "${ApiFunction.Arn}/invocations"
)


def operations(api_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, method key, operation) of every route in an API's DefinitionBody."""
    paths = RESOURCES[api_id]["Properties"]["DefinitionBody"]["paths"]
    return [(path, method, op) for path, item in paths.items() for method, op in item.items()]


def test_each_api_declares_exactly_the_chalice_routes() -> None:
    """Chalice routes by the matched route's path template (requestContext.resourcePath), so
    every route must be declared; the HTTP API adds only its catch-alls, which reach no view."""
    routes = set(chalice_routes())
    assert template_routes("RippleApi") == routes
    catch_alls = {(path, "ANY") for path in CATCH_ALL_ROUTES}
    assert template_routes("RippleHttpApi") == routes | catch_alls
    assert not {path for path, _ in routes} & set(CATCH_ALL_ROUTES)


def test_every_route_is_a_proxy_integration_of_the_api_function() -> None:
    for path, method, op in operations("RippleApi"):
        assert op["x-amazon-apigateway-integration"] == {
            "type": "aws_proxy", "httpMethod": "POST", "uri": {"Fn::Sub": REST_URI}
        }, (path, method)  # fmt: skip
    body = RESOURCES["RippleHttpApi"]["Properties"]["DefinitionBody"]
    (name, integration), *others = body["components"]["x-amazon-apigateway-integrations"].items()
    assert not others
    # Payload format 1.0: the REST proxy event's shape (resourcePath, multiValue*), which Chalice reads.
    assert integration == {
        "type": "aws_proxy", "httpMethod": "POST", "uri": {"Fn::Sub": REST_URI}, "payloadFormatVersion": "1.0"
    }  # fmt: skip
    reference = {"$ref": f"#/components/x-amazon-apigateway-integrations/{name}"}
    for path, method, op in operations("RippleHttpApi"):
        assert op == {"x-amazon-apigateway-integration": reference}, (path, method)


def test_api_type_chooses_one_api_and_rest_stays_the_default() -> None:
    parameter = TEMPLATE["Parameters"]["ApiType"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("REST", ["REST", "HTTP"])
    by_condition: dict[str, set[str]] = {}
    for logical_id, resource in RESOURCES.items():
        if "Condition" in resource:
            by_condition.setdefault(resource["Condition"], set()).add(logical_id)
    assert by_condition == {
        "UseRestApi": {"RippleApi", "RippleApiInvokesApiFunction"},
        "UseHttpApi": {"RippleHttpApi", "RippleHttpApiInvokesApiFunction"},
    }
    for api in ("RippleApi", "RippleHttpApi"):
        permission = RESOURCES[f"{api}InvokesApiFunction"]["Properties"]
        assert permission["FunctionName"] == {"Ref": "ApiFunction"}
        assert permission["SourceArn"]["Fn::Sub"].endswith(f":${{{api}}}/*")
    # SAM gives a function's events no condition of their own: an Api or HttpApi event would
    # make an unconditional permission that Refs a conditional API (rejected under either type).
    for function_id in function_names(TEMPLATE):
        events = (RESOURCES[function_id]["Properties"].get("Events") or {}).values()
        assert not [e for e in events if e["Type"] in ("Api", "HttpApi")], function_id


def test_the_http_api_throttles_as_the_rest_stage_does() -> None:
    (rest,) = RESOURCES["RippleApi"]["Properties"]["MethodSettings"]
    http = RESOURCES["RippleHttpApi"]["Properties"]["DefaultRouteSettings"]
    for key in ("ThrottlingBurstLimit", "ThrottlingRateLimit"):
        assert http[key] == rest[key], key
    assert (
        RESOURCES["RippleHttpApi"]["Properties"]["StageName"]
        == RESOURCES["RippleApi"]["Properties"]["StageName"]
    )


def test_fanout_is_not_invoked_for_a_posts_modify() -> None:
    """A like moves like_count (a MODIFY on the posts stream): fan-out has nothing to do
    with it, so the template filters it out before Lambda invokes (issue 11). Evaluated with
    the local runner's matcher on the sample events the functions are tested with."""
    from ripple_local.esm import MappingConfig

    events = RESOURCES["FanoutFunction"]["Properties"]["Events"]
    parameters = TEMPLATE["Parameters"]
    properties = {
        **events["PostsStream"]["Properties"],
        "DestinationConfig": {},
        "ParallelizationFactor": parameters["FanoutParallelizationFactor"]["Default"],
    }
    config = MappingConfig.from_properties(properties)
    delivered = {}
    for name in ("posts_insert", "posts_modify", "posts_remove"):
        (record,) = json.loads((ROOT / "events" / "fanout" / f"{name}.json").read_text())["Records"]
        delivered[name] = config.delivers(record)
    assert delivered == {"posts_insert": True, "posts_modify": False, "posts_remove": True}


def test_fanout_is_invoked_for_a_job_only_when_it_is_created() -> None:
    """A push batch's continuation jobs are written unconditionally (``enqueue_many``): a
    batch delivered again writes them again, a MODIFY, and TTL's sweep is a REMOVE. Only the
    INSERT may start the job, or a page would be fanned out twice."""
    from ripple_local.esm import MappingConfig

    properties = {
        **RESOURCES["FanoutFunction"]["Properties"]["Events"]["JobsStream"]["Properties"],
        "DestinationConfig": {},
        "ParallelizationFactor": TEMPLATE["Parameters"]["FanoutParallelizationFactor"]["Default"],
    }
    config = MappingConfig.from_properties(properties)
    (record,) = json.loads((ROOT / "events" / "fanout" / "posts_insert.json").read_text())["Records"]
    delivered = {
        event: config.delivers({**record, "eventName": event}) for event in ("INSERT", "MODIFY", "REMOVE")
    }
    assert delivered == {"INSERT": True, "MODIFY": False, "REMOVE": False}


# Lambda keeps records in order per item (partition + sort key) whatever ParallelizationFactor
# is; these consumers' records are independent across items (README, "Fan-out").
PARALLELIZED = {
    ("FanoutFunction", "PostsStream"): "FanoutParallelizationFactor",
    ("FanoutFunction", "FollowsStream"): "FanoutParallelizationFactor",
    ("FanoutFunction", "JobsStream"): "FanoutParallelizationFactor",
    ("FanoutFunction", "RepostsStream"): "FanoutParallelizationFactor",
    ("CacheRefresherFunction", "FeedStream"): "CacheRefresherParallelizationFactor",
}


def test_concurrent_batches_per_shard_only_where_chosen_and_within_lambdas_limits() -> None:
    parameters = TEMPLATE["Parameters"]
    chosen = {}
    for source in stream_event_sources(TEMPLATE):
        factor = source.properties.get("ParallelizationFactor")
        if factor is not None:
            chosen[(source.function_id, source.event_name)] = factor["Ref"]
    assert chosen == PARALLELIZED
    for name in set(PARALLELIZED.values()):
        spec = parameters[name]
        assert (spec["MinValue"], spec["MaxValue"]) == (1, 10)  # Lambda's range
        assert 1 <= spec["Default"] <= 10 and spec["Description"]
