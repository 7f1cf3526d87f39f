"""Create template.yaml's data resources (tables, queues, secrets) on the emulator.

moto's CloudFormation ignores the SAM transform, and LocalStack's needs Docker for the rest, so
the local stack creates the resources it needs itself - from the template, never from a second
hand-kept schema. Creation is idempotent: running ``up`` against an emulator that already holds
the resources reuses them (and keeps the generated secrets, so issued tokens stay valid).
"""

from __future__ import annotations

import json
import logging
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ripple_local.aws import AwsClients
from ripple_local.cfn import Resolver, pseudo_parameters, to_cfn_string

__all__ = [
    "SUPPORTED_TYPES",
    "LocalResource",
    "LocalResources",
    "create_resources",
    "generate_secret_string",
    "physical_name",
]

logger = logging.getLogger(__name__)

TABLE = "AWS::DynamoDB::Table"
QUEUE = "AWS::SQS::Queue"
SECRET = "AWS::SecretsManager::Secret"
SUPPORTED_TYPES = (QUEUE, TABLE, SECRET)  # creation order: queues may be referenced by others

_TABLE_ACTIVE_TIMEOUT_S = 60.0

# CloudFormation property -> SQS attribute of the same meaning (the names happen to agree).
_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


@dataclass(frozen=True)
class LocalResource:
    """One created resource: its ``Ref`` value and its ``Fn::GetAtt`` values."""

    logical_id: str
    type: str
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalResources:
    """What ``create_resources`` made, keyed by logical id, in the shape the Resolver wants."""

    stack_name: str
    region: str
    account_id: str
    resources: dict[str, LocalResource] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # logical id -> type not created locally

    def __getitem__(self, logical_id: str) -> LocalResource:
        return self.resources[logical_id]

    def __contains__(self, logical_id: object) -> bool:
        return logical_id in self.resources

    def add(self, resource: LocalResource) -> None:
        """Record a created (or reused) resource."""
        self.resources[resource.logical_id] = resource

    def refs(self) -> dict[str, str]:
        """Logical id -> Ref value (table name, queue URL, secret ARN)."""
        return {logical_id: resource.ref for logical_id, resource in self.resources.items()}

    def attributes(self) -> dict[str, str]:
        """``"Logical.Attr"`` -> Fn::GetAtt value."""
        return {
            f"{logical_id}.{name}": value
            for logical_id, resource in self.resources.items()
            for name, value in resource.attributes.items()
        }

    def of_type(self, resource_type: str) -> list[LocalResource]:
        """The resources of one CloudFormation type, in template order."""
        return [resource for resource in self.resources.values() if resource.type == resource_type]

    def table_names(self) -> dict[str, str]:
        """Logical id -> physical table name."""
        return {resource.logical_id: resource.ref for resource in self.of_type(TABLE)}

    def queue_urls(self) -> dict[str, str]:
        """Logical id -> queue URL."""
        return {resource.logical_id: resource.ref for resource in self.of_type(QUEUE)}


def physical_name(stack_name: str, logical_id: str) -> str:
    """The local physical name of a resource the template leaves unnamed."""
    return f"{stack_name}-{logical_id}"


def generate_secret_string(spec: Mapping[str, Any]) -> str:
    """A random secret following a GenerateSecretString spec (as GetRandomPassword does)."""
    length = int(spec.get("PasswordLength", 32))

    def flag(name: str) -> bool:
        return to_cfn_string(spec.get(name, False)).lower() == "true"

    excluded = set(str(spec.get("ExcludeCharacters", "")))
    groups = [
        group
        for group, exclude in (
            (string.ascii_lowercase, flag("ExcludeLowercase")),
            (string.ascii_uppercase, flag("ExcludeUppercase")),
            (string.digits, flag("ExcludeNumbers")),
            (string.punctuation, flag("ExcludePunctuation")),
            (" ", not flag("IncludeSpace")),
        )
        if not exclude
    ]
    groups = [kept for kept in ("".join(c for c in group if c not in excluded) for group in groups) if kept]
    if not groups:
        raise ValueError(f"GenerateSecretString {dict(spec)} leaves no characters to choose from")
    alphabet = "".join(groups)
    require_each = to_cfn_string(spec.get("RequireEachIncludedType", True)).lower() == "true"
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if not require_each or length < len(groups) or all(any(c in g for c in password) for g in groups):
            break
    template = spec.get("SecretStringTemplate")
    key = spec.get("GenerateStringKey")
    if template is not None and key is not None:
        document = json.loads(template)
        document[key] = password
        return json.dumps(document)
    return password


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class _Creator:
    """Creates resources one by one, resolving properties against what already exists."""

    def __init__(
        self,
        template: Mapping[str, Any],
        clients: AwsClients,
        stack_name: str,
        parameters: Mapping[str, str],
        secret_store: Path | None = None,
    ) -> None:
        self.template = template
        self.clients = clients
        self.parameters = dict(parameters)
        self.secret_store = secret_store
        self.created = LocalResources(
            stack_name=stack_name, region=clients.region, account_id=clients.account_id()
        )

    def resolve(self, value: Any) -> Any:
        """Evaluate intrinsics in a property; literals are returned untouched (ints stay ints)."""
        if isinstance(value, dict) and len(value) == 1:
            key = next(iter(value))
            if key == "Ref" or key.startswith("Fn::"):
                return self._resolver().resolve(value)
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def _resolver(self) -> Resolver:
        created = self.created
        pseudo = pseudo_parameters(created.region, created.account_id, created.stack_name)
        conditions = self.template.get("Conditions") or {}
        return Resolver(self.parameters, created.refs(), created.attributes(), pseudo, conditions)

    def holds(self, resource: Mapping[str, Any]) -> bool:
        """False for a resource whose ``Condition`` is false under the parameters (not created)."""
        return self._resolver().holds(resource)

    def name(self, logical_id: str, properties: Mapping[str, Any], key: str) -> str:
        if key in properties:
            return to_cfn_string(self.resolve(properties[key]))
        return physical_name(self.created.stack_name, logical_id)

    # ------------------------------------------------------------------ tables

    def table(self, logical_id: str, properties: Mapping[str, Any]) -> LocalResource:
        dynamodb = self.clients.dynamodb
        name = self.name(logical_id, properties, "TableName")
        props = self.resolve(dict(properties))
        billing_mode = props.get("BillingMode", "PROVISIONED")
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": billing_mode,
        }
        if billing_mode == "PROVISIONED":
            request["ProvisionedThroughput"] = _throughput(props.get("ProvisionedThroughput"))
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            indexes = props.get(key)
            if indexes:
                request[key] = [_index(index, billing_mode, key) for index in indexes]
        stream = props.get("StreamSpecification")
        if stream:
            request["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        try:
            dynamodb.create_table(**request)
            logger.info("created table %s", name)
        except ClientError as error:
            if _error_code(error) != "ResourceInUseException":
                raise
            logger.info("reusing table %s", name)
        description = self._wait_active(name)
        description = self._converge_table(name, description, request)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            self._ensure_ttl(name, ttl)
        attributes = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
            self._wait_stream_enabled(description["LatestStreamArn"])
        return LocalResource(logical_id, TABLE, name, attributes)

    def _wait_stream_enabled(self, stream_arn: str) -> None:
        """A new table's stream is readable only once ENABLED, which DynamoDB Local and
        LocalStack reach a little after the table is ACTIVE (LocalStack answers 500s until)."""
        deadline = time.monotonic() + _TABLE_ACTIVE_TIMEOUT_S
        status = None
        while time.monotonic() < deadline:
            try:
                description = self.clients.dynamodbstreams.describe_stream(StreamArn=stream_arn)
                status = description["StreamDescription"].get("StreamStatus")
            except ClientError as error:
                status = _error_code(error)
            if status == "ENABLED":
                return
            time.sleep(0.1)
        raise TimeoutError(f"stream {stream_arn} is still {status}")

    def _wait_active(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + _TABLE_ACTIVE_TIMEOUT_S
        while True:
            description: dict[str, Any] = self.clients.dynamodb.describe_table(TableName=name)["Table"]
            if description.get("TableStatus") == "ACTIVE":
                return description
            if time.monotonic() > deadline:
                raise TimeoutError(f"table {name} is still {description.get('TableStatus')}")
            time.sleep(0.1)

    def _converge_table(
        self, name: str, description: dict[str, Any], request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Give a reused table the stream the template asks for; warn about what cannot be fixed."""
        wanted_stream = request.get("StreamSpecification")
        current_stream = description.get("StreamSpecification") or {}
        if wanted_stream and not current_stream.get("StreamEnabled"):
            logger.info("enabling the %s stream of existing table %s", wanted_stream["StreamViewType"], name)
            self.clients.dynamodb.update_table(TableName=name, StreamSpecification=wanted_stream)
            description = self._wait_active(name)
        elif wanted_stream and current_stream.get("StreamViewType") != wanted_stream["StreamViewType"]:
            logger.warning(
                "table %s streams %s but the template wants %s: delete it to recreate",
                name,
                current_stream.get("StreamViewType"),
                wanted_stream["StreamViewType"],
            )
        existing = {index["IndexName"] for index in description.get("GlobalSecondaryIndexes", [])}
        missing = [
            index["IndexName"]
            for index in request.get("GlobalSecondaryIndexes", [])
            if index["IndexName"] not in existing
        ]
        if missing:
            logger.warning("table %s lacks the template's indexes %s: delete it to recreate", name, missing)
        return description

    def _ensure_ttl(self, name: str, ttl: Mapping[str, Any]) -> None:
        enabled = to_cfn_string(ttl.get("Enabled", False)).lower() == "true"
        status = self.clients.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if enabled == (status.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")):
            return
        self.clients.dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": enabled, "AttributeName": str(ttl["AttributeName"])},
        )

    # ------------------------------------------------------------------ queues

    def queue(self, logical_id: str, properties: Mapping[str, Any]) -> LocalResource:
        sqs = self.clients.sqs
        fifo = to_cfn_string(properties.get("FifoQueue", False)).lower() == "true"
        name = self.name(logical_id, properties, "QueueName")
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes: dict[str, str] = {}
        for key in _QUEUE_ATTRIBUTES:
            if key in properties:
                value = self.resolve(properties[key])
                attributes[key] = (
                    json.dumps(value) if isinstance(value, (dict, list)) else to_cfn_string(value)
                )
        try:
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            logger.info("created queue %s", name)
        except ClientError as error:
            if _error_code(error) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            changeable = {key: value for key, value in attributes.items() if key != "FifoQueue"}
            if changeable:
                sqs.set_queue_attributes(QueueUrl=url, Attributes=changeable)
            logger.info("reusing queue %s (attributes brought in line with the template)", name)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return LocalResource(logical_id, QUEUE, url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    # ------------------------------------------------------------------ secrets

    def _generated(self, name: str, generate: Callable[[], str]) -> str:
        """A generated secret value; with a ``secret_store`` file, the one generated for this
        name before (so data kept with ``up --persist`` keeps its signing key, and tokens
        issued before a restart stay valid, although moto forgets the secret itself)."""
        if self.secret_store is None:
            return generate()
        stored = _load_secrets(self.secret_store)
        if name not in stored:
            stored[name] = generate()
            self.secret_store.parent.mkdir(parents=True, exist_ok=True)
            self.secret_store.touch(mode=0o600)
            self.secret_store.write_text(json.dumps(stored, indent=2))
        return stored[name]

    def secret(self, logical_id: str, properties: Mapping[str, Any]) -> LocalResource:
        manager = self.clients.secretsmanager
        name = self.name(logical_id, properties, "Name")
        request: dict[str, Any] = {"Name": name}
        if "Description" in properties:
            request["Description"] = to_cfn_string(self.resolve(properties["Description"]))
        if "SecretString" in properties:
            request["SecretString"] = to_cfn_string(self.resolve(properties["SecretString"]))
        else:
            request["SecretString"] = self._generated(
                name,
                lambda: generate_secret_string(self.resolve(properties.get("GenerateSecretString") or {})),
            )
        try:
            arn = manager.create_secret(**request)["ARN"]
            logger.info("created secret %s", name)
        except ClientError as error:
            if _error_code(error) != "ResourceExistsException":
                raise
            arn = manager.describe_secret(SecretId=name)["ARN"]
            logger.info("reusing secret %s (its value is kept)", name)
        return LocalResource(logical_id, SECRET, arn, {"Id": arn})


def _load_secrets(path: Path) -> dict[str, str]:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}


def _throughput(value: Any) -> dict[str, int]:
    value = value or {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


def _index(index: Mapping[str, Any], billing_mode: str, kind: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "IndexName": index["IndexName"],
        "KeySchema": index["KeySchema"],
        "Projection": index["Projection"],
    }
    if billing_mode == "PROVISIONED" and kind == "GlobalSecondaryIndexes":
        result["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"))
    return result


def create_resources(
    template: Mapping[str, Any],
    clients: AwsClients,
    stack_name: str,
    parameters: Mapping[str, str] | None = None,
    secret_store: Path | None = None,
) -> LocalResources:
    """Create (or reuse) every table, queue and secret of ``template`` on the emulator.

    ``parameters`` are the final parameter values, needed only when resource properties refer
    to parameters. ``secret_store`` (a JSON file) keeps generated secret values across runs.
    Resources of other types, and those whose ``Condition`` is false, are listed in
    ``LocalResources.skipped``.
    """
    creator = _Creator(template, clients, stack_name, parameters or {}, secret_store)
    resources: Mapping[str, Any] = template.get("Resources") or {}
    builders = {QUEUE: creator.queue, TABLE: creator.table, SECRET: creator.secret}
    # Queues without a redrive policy first: a redrive policy may name another queue's Arn.
    ordered = sorted(
        resources.items(),
        key=lambda item: (
            SUPPORTED_TYPES.index(item[1]["Type"])
            if item[1].get("Type") in SUPPORTED_TYPES
            else len(SUPPORTED_TYPES),
            "RedrivePolicy" in (item[1].get("Properties") or {}),
        ),
    )
    for logical_id, resource in ordered:
        resource_type = resource.get("Type", "")
        builder = builders.get(resource_type)
        if builder is None or not creator.holds(resource):
            creator.created.skipped[logical_id] = resource_type
            continue
        creator.created.add(builder(logical_id, resource.get("Properties") or {}))
    # Keep template order for the caller (stable output, predictable listings).
    created = creator.created
    created.resources = {lid: created.resources[lid] for lid in resources if lid in created.resources}
    return created
