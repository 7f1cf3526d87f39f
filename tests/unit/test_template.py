"""template.yaml is valid and matches the code: functions 1:1 with functions/, API events
1:1 with the Chalice routes, every stream consumer configured for partial failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ripple_local.cfn import load_template
from ripple_local.functions import function_names, stream_event_sources
from tests.unit.test_openapi import chalice_routes

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
        # Images where the consumer reads the row; the likes stream's keys are the whole row.
        assert view in ({"KEYS_ONLY"} if table == "LikesTable" else {"NEW_IMAGE", "NEW_AND_OLD_IMAGES"})


@pytest.mark.parametrize("function_id", ["ApiFunction"])
def test_api_events_match_the_chalice_routes(function_id: str) -> None:
    events = RESOURCES[function_id]["Properties"]["Events"].values()
    declared = {
        (e["Properties"]["Path"], e["Properties"]["Method"].upper()) for e in events if e["Type"] == "Api"
    }
    assert declared == set(chalice_routes())


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


# Lambda keeps records in order per item (partition + sort key) whatever ParallelizationFactor
# is; these consumers' records are independent across items (README, "Fan-out").
PARALLELIZED = {
    ("FanoutFunction", "PostsStream"): "FanoutParallelizationFactor",
    ("FanoutFunction", "FollowsStream"): "FanoutParallelizationFactor",
    ("FanoutFunction", "JobsStream"): "FanoutParallelizationFactor",
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
