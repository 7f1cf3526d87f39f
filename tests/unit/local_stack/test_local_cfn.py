"""The template loader and resolver, on the real template.yaml (no emulator needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ripple_local.cfn import CfnResolutionError, Resolver, load_template, parameter_values, pseudo_parameters
from ripple_local.environment import build_resolver, function_environment, stack_environment
from ripple_local.resources import LocalResource, LocalResources
from ripple_local.samconfig import parameter_overrides

ROOT = Path(__file__).resolve().parents[3]
STACK = "unit-stack"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def fake_resources(template: dict[str, Any]) -> LocalResources:
    """What create_resources would report, built by hand: tables, queue and secret."""
    resources = LocalResources(stack_name=STACK, region="us-east-1", account_id=ACCOUNT)
    for logical_id, resource in template["Resources"].items():
        name = f"{STACK}-{logical_id}"
        if resource["Type"] == "AWS::DynamoDB::Table":
            arn = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{name}"
            resources.add(
                LocalResource(
                    logical_id, resource["Type"], name, {"Arn": arn, "StreamArn": f"{arn}/stream/x"}
                )
            )
        elif resource["Type"] == "AWS::SQS::Queue":
            url = f"http://localhost/{ACCOUNT}/{name}"
            arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"
            resources.add(
                LocalResource(
                    logical_id, resource["Type"], url, {"Arn": arn, "QueueName": name, "QueueUrl": url}
                )
            )
        elif resource["Type"] == "AWS::SecretsManager::Secret":
            arn = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{name}-AbCdEf"
            resources.add(LocalResource(logical_id, resource["Type"], arn, {"Id": arn}))
    return resources


@pytest.fixture
def resolver(template: dict[str, Any]) -> Resolver:
    parameters = parameter_values(template, parameter_overrides(ROOT / "samconfig.toml", "local"))
    return build_resolver(template, fake_resources(template), parameters, "127.0.0.1", 6390)


# ---------------------------------------------------------------------- loader


def test_short_tags_of_the_real_template_become_long_forms(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POSTS_TABLE"] == {"Ref": "PostsTable"}
    assert variables["REDIS_HOST"] == {"Fn::GetAtt": ["RedisReplicationGroup", "PrimaryEndPoint.Address"]}
    subnet = template["Resources"]["PrivateSubnetA"]["Properties"]
    assert subnet["CidrBlock"] == {"Fn::Select": [0, {"Fn::Cidr": [{"Ref": "VpcCidr"}, 4, 8]}]}
    assert subnet["AvailabilityZone"] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    stream = template["Resources"]["FanoutFunction"]["Properties"]["Events"]["PostsStream"]["Properties"]
    assert stream["Stream"] == {"Fn::GetAtt": ["PostsTable", "StreamArn"]}


def test_every_short_tag_in_scalar_sequence_and_mapping_form(tmp_path: Path) -> None:
    # Given a template using each short tag
    path = tmp_path / "t.yaml"
    path.write_text(
        "\n".join(
            [
                "Version: 2010-09-09",
                "A: !Ref X",
                "B: !GetAtt R.Attr.Nested",
                "C: !GetAtt [R, Attr]",
                "D: !Sub 'x-${AWS::Region}'",
                "E: !Sub ['${a}-${b}', {a: !Ref X, b: lit}]",
                "F: !Select [1, [p, q]]",
                "G: !Cidr [10.0.0.0/16, 2, 8]",
                "H: !GetAZs ''",
                "I: !Join ['-', [a, !Ref X]]",
                "J: !If [Cond, a, b]",
                "K: !Equals [a, b]",
                "L: !Not [!Condition Cond]",
                "M: !And [!Condition C1, !Condition C2]",
                "N: !Or [!Condition C1, !Condition C2]",
                "O: !FindInMap [Map, Key, Value]",
                "P: !Split [',', 'a,b']",
                "Q: !Base64 {'Fn::Sub': 'x'}",
                "R: !ImportValue Exported",
            ]
        )
    )
    # When it is loaded
    loaded = load_template(path)
    # Then each tag has its long form (and dates stay strings, as in CloudFormation)
    assert loaded["Version"] == "2010-09-09"
    assert loaded["A"] == {"Ref": "X"}
    assert loaded["B"] == {"Fn::GetAtt": ["R", "Attr.Nested"]}
    assert loaded["C"] == {"Fn::GetAtt": ["R", "Attr"]}
    assert loaded["D"] == {"Fn::Sub": "x-${AWS::Region}"}
    assert loaded["E"] == {"Fn::Sub": ["${a}-${b}", {"a": {"Ref": "X"}, "b": "lit"}]}
    assert loaded["F"] == {"Fn::Select": [1, ["p", "q"]]}
    assert loaded["G"] == {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}
    assert loaded["H"] == {"Fn::GetAZs": ""}
    assert loaded["I"] == {"Fn::Join": ["-", ["a", {"Ref": "X"}]]}
    assert loaded["J"] == {"Fn::If": ["Cond", "a", "b"]}
    assert loaded["K"] == {"Fn::Equals": ["a", "b"]}
    assert loaded["L"] == {"Fn::Not": [{"Condition": "Cond"}]}
    assert loaded["M"] == {"Fn::And": [{"Condition": "C1"}, {"Condition": "C2"}]}
    assert loaded["N"] == {"Fn::Or": [{"Condition": "C1"}, {"Condition": "C2"}]}
    assert loaded["O"] == {"Fn::FindInMap": ["Map", "Key", "Value"]}
    assert loaded["P"] == {"Fn::Split": [",", "a,b"]}
    assert loaded["Q"] == {"Fn::Base64": {"Fn::Sub": "x"}}
    assert loaded["R"] == {"Fn::ImportValue": "Exported"}


# ---------------------------------------------------------------------- resolver


def test_fanout_environment_resolves_from_the_template(template: dict[str, Any], resolver: Resolver) -> None:
    # When the FanoutFunction's environment is resolved against local resources
    env = function_environment(template, "FanoutFunction", resolver)
    # Then table refs are the local physical names, Redis is local, parameters are strings
    assert env["POSTS_TABLE"] == f"{STACK}-PostsTable"
    assert env["FEED_TABLE"] == f"{STACK}-FeedTable"
    assert env["REDIS_HOST"] == "127.0.0.1"
    assert env["REDIS_PORT"] == "6390"
    assert env["REDIS_TLS"] == "false"  # samconfig [local] override
    assert env["STAGE"] == "local"
    assert env["FEED_CACHE_MAX_ITEMS"] == "800"  # template default, an int in YAML
    assert env["JWT_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert env["POWERTOOLS_SERVICE_NAME"] == "ripple-fanout"  # the function's own wins
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Ripple"


def test_stack_environment_is_the_union_plus_local_aws_settings(
    template: dict[str, Any], resolver: Resolver
) -> None:
    functions = ["ApiFunction", "FanoutFunction", "CacheRefresherFunction"]
    env = stack_environment(template, functions, resolver, "http://127.0.0.1:4566")
    assert env["POWERTOOLS_SERVICE_NAME"] == "ripple-local"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["USERS_TABLE"] == f"{STACK}-UsersTable"


def test_sub_select_cidr_and_pseudo_parameters(template: dict[str, Any], resolver: Resolver) -> None:
    resources = template["Resources"]
    endpoint = resources["DynamoDbEndpoint"]["Properties"]["ServiceName"]
    assert resolver.resolve(endpoint) == "com.amazonaws.us-east-1.dynamodb"
    assert resolver.resolve(resources["PrivateSubnetB"]["Properties"]["CidrBlock"]) == "10.42.1.0/24"
    assert resolver.resolve(resources["PrivateSubnetA"]["Properties"]["AvailabilityZone"]) == "us-east-1a"
    assert resolver.resolve({"Fn::Sub": "${PostsTable.Arn}|${!Literal}"}) == (
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{STACK}-PostsTable|${{Literal}}"
    )
    sub_list = {"Fn::Sub": ["${Name}-${AWS::AccountId}", {"Name": {"Ref": "Stage"}}]}
    assert resolver.resolve(sub_list) == f"local-{ACCOUNT}"


def test_unknown_references_name_themselves(template: dict[str, Any], resolver: Resolver) -> None:
    # RippleApi is an AWS::Serverless::Api (ApiType's default, REST): nothing local stands behind it
    with pytest.raises(CfnResolutionError, match="RippleApi"):
        resolver.resolve(template["Outputs"]["ApiUrl"]["Value"])
    with pytest.raises(CfnResolutionError, match=r"NoSuchTable\.Arn"):
        resolver.resolve({"Fn::GetAtt": ["NoSuchTable", "Arn"]})
    # What template.yaml does not use is refused by name, not guessed at.
    for unused in ("Fn::FindInMap", "Fn::Join", "Fn::Split", "Fn::Base64"):
        with pytest.raises(CfnResolutionError, match=unused):
            resolver.resolve({unused: ["M", "K"]})


def test_environment_errors_say_which_function_and_variable() -> None:
    template = {
        "Resources": {
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Environment": {"Variables": {"TABLE": {"Ref": "Missing"}}}},
            }
        }
    }
    empty = Resolver({}, {}, {}, pseudo_parameters("us-east-1", ACCOUNT, STACK))
    with pytest.raises(CfnResolutionError, match=r"Fn environment variable TABLE: Ref 'Missing'"):
        function_environment(template, "Fn", empty)


def test_parameter_values_merge_defaults_and_check_overrides(template: dict[str, Any]) -> None:
    values = parameter_values(template, {"Stage": "local"})
    assert values["Stage"] == "local"
    assert values["RedisTls"] == "true"
    assert values["FeedCacheTtlSeconds"] == "604800"
    with pytest.raises(CfnResolutionError, match="Nope"):
        parameter_values(template, {"Nope": "x"})
    with pytest.raises(CfnResolutionError, match="RedisTls"):
        parameter_values(template, {"RedisTls": "maybe"})


# ---------------------------------------------------------------------- conditions
@pytest.mark.parametrize(("api_type", "api"), [("REST", "RippleApi"), ("HTTP", "RippleHttpApi")])
def test_api_type_decides_which_api_is_in_the_stack(
    template: dict[str, Any], api_type: str, api: str
) -> None:
    # Given the template under each ApiType
    parameters = parameter_values(template, {"ApiType": api_type})
    resolver = build_resolver(template, fake_resources(template), parameters, "127.0.0.1", 6390)
    # Then exactly one API, and its permission, is part of the stack
    apis = {"RippleApi", "RippleHttpApi"}
    present = {lid for lid, resource in template["Resources"].items() if resolver.holds(resource)}
    assert present & apis == {api}
    assert {f"{api}InvokesApiFunction"} == present & {f"{a}InvokesApiFunction" for a in apis}
    # And the ApiUrl output names that API (neither exists locally, so the error names it)
    with pytest.raises(CfnResolutionError, match=f"Ref '{api}'"):
        resolver.resolve(template["Outputs"]["ApiUrl"]["Value"])
    # And every resource the local stack creates is there under both types
    assert all(
        resolver.holds(r) for r in template["Resources"].values() if r["Type"].startswith("AWS::DynamoDB")
    )


def test_conditions_combine_and_refuse_what_they_cannot_evaluate() -> None:
    conditions = {
        "Prod": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        "NotProd": {"Fn::Not": [{"Condition": "Prod"}]},
        "ProdAndTls": {"Fn::And": [{"Condition": "Prod"}, {"Fn::Equals": ["true", {"Ref": "Tls"}]}]},
        "Either": {"Fn::Or": [{"Condition": "Prod"}, {"Condition": "NotProd"}]},
        "Loop": {"Fn::Not": [{"Condition": "Loop"}]},
        "Odd": {"Fn::Sub": "x"},
    }
    pseudo = pseudo_parameters("us-east-1", ACCOUNT, STACK)
    resolver = Resolver({"Stage": "dev", "Tls": "true"}, {}, {}, pseudo, conditions)
    values = {name: resolver.condition(name) for name in ("Prod", "NotProd", "ProdAndTls", "Either")}
    assert values == {"Prod": False, "NotProd": True, "ProdAndTls": False, "Either": True}
    assert resolver.resolve({"Fn::If": ["NotProd", "a", {"Ref": "Stage"}]}) == "a"
    assert resolver.resolve({"Fn::If": ["Prod", "a", {"Ref": "Stage"}]}) == "dev"
    assert resolver.holds({"Type": "T"}) and not resolver.holds({"Type": "T", "Condition": "Prod"})
    for name, message in (("Loop", "refers to itself"), ("Odd", "not a condition"), ("Nope", "not declared")):
        with pytest.raises(CfnResolutionError, match=message):
            resolver.condition(name)
