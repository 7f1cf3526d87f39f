"""template.yaml's tables, queue and secret created on the real moto server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from ripple_local.aws import AwsClients, Endpoints
from ripple_local.cfn import load_template, parameter_values
from ripple_local.resources import LocalResources, create_resources

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # runs on every emulator

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture
def stack_name() -> str:
    return f"res-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clients(emulator: Endpoints) -> AwsClients:
    return AwsClients.for_endpoints(emulator)


@pytest.fixture
def created(template: dict[str, Any], clients: AwsClients, stack_name: str) -> LocalResources:
    return create_resources(template, clients, stack_name, parameter_values(template))


def key_schema(description: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in description["KeySchema"]]


def test_every_table_is_created_as_the_template_declares(
    template: dict[str, Any], created: LocalResources, clients: AwsClients, stack_name: str
) -> None:
    declared = {lid: r for lid, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert set(created.table_names()) == set(declared)
    for logical_id, resource in declared.items():
        props = resource["Properties"]
        table = clients.dynamodb.describe_table(TableName=f"{stack_name}-{logical_id}")["Table"]
        assert key_schema(table) == [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        wanted_indexes = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
        actual_indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
        assert set(actual_indexes) == set(wanted_indexes)
        for name, index in wanted_indexes.items():
            assert key_schema(actual_indexes[name]) == [
                (k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]
            ]
            assert (
                actual_indexes[name]["Projection"]["ProjectionType"] == index["Projection"]["ProjectionType"]
            )
        if "StreamSpecification" in props:
            assert table["StreamSpecification"] == {
                "StreamEnabled": True,
                "StreamViewType": props["StreamSpecification"]["StreamViewType"],
            }
            assert created[logical_id].attributes["StreamArn"] == table["LatestStreamArn"]
        else:
            assert "StreamArn" not in created[logical_id].attributes
        assert created[logical_id].attributes["Arn"] == table["TableArn"]


def test_failure_queue_and_secret(created: LocalResources, clients: AwsClients, stack_name: str) -> None:
    queue = created["StreamFailureQueue"]
    attributes = clients.sqs.get_queue_attributes(QueueUrl=queue.ref, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "1209600"
    assert queue.attributes["Arn"] == attributes["QueueArn"]
    assert queue.attributes["QueueName"] == f"{stack_name}-StreamFailureQueue"

    secret = created["JwtSecret"]
    value = clients.secretsmanager.get_secret_value(SecretId=secret.ref)["SecretString"]
    assert len(value) == 64 and value.isalnum()  # PasswordLength 64, ExcludePunctuation


def test_creating_twice_reuses_everything(
    template: dict[str, Any], created: LocalResources, clients: AwsClients, stack_name: str
) -> None:
    # Given resources already on the emulator (the `created` fixture), and a stored secret
    secret_before = clients.secretsmanager.get_secret_value(SecretId=created["JwtSecret"].ref)["SecretString"]
    # When they are created again (a second `up` against the same emulator)
    again = create_resources(template, clients, stack_name, parameter_values(template))
    # Then the same resources come back, and the secret keeps its value
    assert again.refs() == created.refs()
    assert again.attributes() == created.attributes()
    secret_after = clients.secretsmanager.get_secret_value(SecretId=again["JwtSecret"].ref)["SecretString"]
    assert secret_after == secret_before
    assert "RedisReplicationGroup" in again.skipped  # not an emulator resource: Redis is local


def test_ttl_and_redrive_properties_are_honoured(clients: AwsClients, stack_name: str) -> None:
    template = {
        "Resources": {
            "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "Work": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "VisibilityTimeout": 45,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]},
                        "maxReceiveCount": 3,
                    },
                },
            },
            "Sessions": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                },
            },
        }
    }
    created = create_resources(template, clients, stack_name)
    ttl = clients.dynamodb.describe_time_to_live(TableName=created["Sessions"].ref)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    attributes = clients.sqs.get_queue_attributes(QueueUrl=created["Work"].ref, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["VisibilityTimeout"] == "45"
    assert created["Dlq"].attributes["Arn"] in attributes["RedrivePolicy"]


def test_a_resource_whose_condition_is_false_is_not_created(clients: AwsClients, stack_name: str) -> None:
    # Given a template with a queue that exists only in prod
    template = {
        "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
        "Resources": {
            "Always": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "ProdOnly": {"Type": "AWS::SQS::Queue", "Condition": "IsProd", "Properties": {}},
        },
    }
    # When it is created for dev, then for prod
    dev = create_resources(template, clients, stack_name, parameter_values(template))
    prod_parameters = parameter_values(template, {"Stage": "prod"})
    prod = create_resources(template, clients, f"{stack_name}-p", prod_parameters)
    # Then the conditional queue exists only where its condition holds
    assert (set(dev.resources), dev.skipped) == ({"Always"}, {"ProdOnly": "AWS::SQS::Queue"})
    assert set(prod.resources) == {"Always", "ProdOnly"}
