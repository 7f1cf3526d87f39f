"""Read template.yaml and evaluate the intrinsic functions the local stack needs.

template.yaml is the single source of truth for resources, so the local stack reads it rather
than keeping a second hand-written schema. Plain ``yaml.safe_load`` rejects CloudFormation's
short tags (``!Ref``, ``!GetAtt`` ...), hence the loader; the resolver then turns the long forms
into the strings a Lambda would see in its environment.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import yaml

__all__ = [
    "CfnLoader",
    "CfnResolutionError",
    "Resolver",
    "load_template",
    "parameter_values",
    "pseudo_parameters",
    "to_cfn_string",
]

# Short tag -> long form key. Every tag accepts a scalar, a sequence or a mapping node, like
# CloudFormation does (e.g. ``!Base64 !Sub ...`` or ``!Sub [tpl, {vars}]``).
_SHORT_TAGS: dict[str, str] = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "Select": "Fn::Select",
    "Cidr": "Fn::Cidr",
    "GetAZs": "Fn::GetAZs",
    "Join": "Fn::Join",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "FindInMap": "Fn::FindInMap",
    "Split": "Fn::Split",
    "Base64": "Fn::Base64",
    "ImportValue": "Fn::ImportValue",
}


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that maps CloudFormation short tags to their long (JSON) forms.

    Timestamps are left as strings: CloudFormation never turns ``2010-09-09`` into a date.
    """

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _construct_node(loader: CfnLoader, node: yaml.Node) -> Any:
    """Build the plain Python value of a tagged node, whatever its kind."""
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}", node.start_mark)


def _make_constructor(long_form: str) -> Any:
    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        value = _construct_node(loader, node)
        if long_form == "Fn::GetAtt" and isinstance(value, str):
            # "A.B.C" means resource A, attribute "B.C" (nested attribute names keep their dots).
            logical_id, _, attribute = value.partition(".")
            value = [logical_id, attribute]
        return {long_form: value}

    return construct


for _tag, _long_form in _SHORT_TAGS.items():
    CfnLoader.add_constructor(f"!{_tag}", _make_constructor(_long_form))


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a CloudFormation/SAM YAML template with short tags as long-form dicts."""
    with open(path, encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CfnLoader)  # CfnLoader is a SafeLoader
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a template must be a mapping, got {type(document).__name__}")
    return document


class CfnResolutionError(ValueError):
    """An intrinsic function cannot be evaluated locally (unknown name, unsupported function)."""


def to_cfn_string(value: Any) -> str:
    """Render a scalar as CloudFormation does when it passes it on (e.g. into env vars)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise CfnResolutionError(f"expected a scalar, got {type(value).__name__}: {value!r}")


def parameter_values(
    template: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Template parameter defaults merged with overrides, as strings.

    Overrides for parameters the template does not declare are an error (as in ``sam deploy``),
    and so is a parameter left without any value or outside its AllowedValues.
    """
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise CfnResolutionError(f"parameter overrides not declared in the template: {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in overrides:
            value = to_cfn_string(overrides[name])
        elif "Default" in spec:
            value = to_cfn_string(spec["Default"])
        else:
            raise CfnResolutionError(f"parameter {name} has no Default and no override")
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [to_cfn_string(v) for v in allowed]:
            raise CfnResolutionError(f"parameter {name}={value!r} is not one of {allowed}")
        values[name] = value
    return values


def pseudo_parameters(region: str, account_id: str, stack_name: str) -> dict[str, str]:
    """The AWS::* pseudo parameters for a stack in ``region`` (standard ``aws`` partition)."""
    return {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::StackName": stack_name,
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Evaluate intrinsic functions against local values.

    ``parameters`` are final parameter values (see :func:`parameter_values`), ``refs`` map
    resource logical ids to their ``Ref`` value (physical id), ``attributes`` map
    ``"Logical.Attr"`` to ``Fn::GetAtt`` values and ``pseudo`` holds ``AWS::*`` values.
    ``conditions`` is the template's ``Conditions`` section, for ``Fn::If`` and :meth:`condition`.
    Scalars come back as strings because that is what ends up in Lambda environment variables.
    """

    def __init__(
        self,
        parameters: Mapping[str, str],
        refs: Mapping[str, str],
        attributes: Mapping[str, str],
        pseudo: Mapping[str, str],
        conditions: Mapping[str, Any] | None = None,
    ) -> None:
        self.parameters = dict(parameters)
        self.refs = dict(refs)
        self.attributes = dict(attributes)
        self.pseudo = dict(pseudo)
        self.conditions = dict(conditions or {})
        self._evaluating: set[str] = set()

    def condition(self, name: str) -> bool:
        """The value of the template condition ``name`` under these parameters.

        Conditions are built from ``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or`` and
        ``Condition`` (a reference to another condition), as in CloudFormation.
        """
        if name not in self.conditions:
            raise CfnResolutionError(f"condition {name!r} is not declared in the template's Conditions")
        if name in self._evaluating:
            raise CfnResolutionError(f"condition {name!r} refers to itself")
        self._evaluating.add(name)
        try:
            return self._truth(self.conditions[name])
        finally:
            self._evaluating.discard(name)

    def holds(self, resource: Mapping[str, Any]) -> bool:
        """True if a resource (or output) is part of the stack: it has no ``Condition`` or its
        condition is true."""
        name = resource.get("Condition")
        return True if name is None else self.condition(str(name))

    def _truth(self, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            function, argument = next(iter(expression.items()))
            if function == "Condition" and isinstance(argument, str):
                return self.condition(argument)
            if function == "Fn::Equals" and isinstance(argument, list) and len(argument) == 2:
                return bool(self.resolve(argument[0]) == self.resolve(argument[1]))
            if function == "Fn::Not" and isinstance(argument, list) and len(argument) == 1:
                return not self._truth(argument[0])
            if function == "Fn::And" and isinstance(argument, list) and 2 <= len(argument) <= 10:
                return all(self._truth(item) for item in argument)
            if function == "Fn::Or" and isinstance(argument, list) and 2 <= len(argument) <= 10:
                return any(self._truth(item) for item in argument)
        raise CfnResolutionError(f"not a condition the local resolver can evaluate: {expression!r}")

    def resolve(self, value: Any) -> Any:
        """Evaluate ``value`` recursively; scalars become strings, lists and dicts keep their shape."""
        if isinstance(value, dict):
            if len(value) == 1:
                key, argument = next(iter(value.items()))
                if key == "Ref" or key.startswith("Fn::"):
                    return self._intrinsic(key, argument)
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if value is None:
            raise CfnResolutionError("null value cannot be resolved")
        return to_cfn_string(value)

    def resolve_str(self, value: Any) -> str:
        """Evaluate ``value`` and insist that the result is a string."""
        result = self.resolve(value)
        if not isinstance(result, str):
            raise CfnResolutionError(f"expected a string from {value!r}, got {result!r}")
        return result

    # ------------------------------------------------------------------ intrinsics

    def _intrinsic(self, name: str, argument: Any) -> Any:
        handlers = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Select": self._select,
            "Fn::Cidr": self._cidr,
            "Fn::GetAZs": self._get_azs,
            "Fn::If": self._if,
        }
        handler = handlers.get(name)
        if handler is None:
            raise CfnResolutionError(f"{name} is not supported by the local resolver: {argument!r}")
        return handler(argument)

    def _if(self, argument: Any) -> Any:
        if not (isinstance(argument, list) and len(argument) == 3 and isinstance(argument[0], str)):
            raise CfnResolutionError(f"Fn::If takes [condition, if true, if false], got {argument!r}")
        name, if_true, if_false = argument
        return self.resolve(if_true if self.condition(name) else if_false)

    def _ref(self, argument: Any) -> str:
        name = self.resolve_str(argument)
        for table in (self.parameters, self.pseudo, self.refs):
            if name in table:
                return table[name]
        raise CfnResolutionError(
            f"Ref {name!r} is neither a parameter, a pseudo parameter nor a resource created locally"
        )

    def _get_att(self, argument: Any) -> str:
        if isinstance(argument, str):
            logical_id, _, attribute = argument.partition(".")
        elif isinstance(argument, list) and len(argument) == 2:
            logical_id, attribute = self.resolve_str(argument[0]), self.resolve_str(argument[1])
        else:
            raise CfnResolutionError(f"Fn::GetAtt takes [LogicalId, Attribute], got {argument!r}")
        return self._attribute(logical_id, attribute)

    def _attribute(self, logical_id: str, attribute: str) -> str:
        key = f"{logical_id}.{attribute}"
        if key not in self.attributes:
            raise CfnResolutionError(f"Fn::GetAtt {key!r} has no local value")
        return self.attributes[key]

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, str):
            template, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], dict):
            template = argument[0]
            variables = {key: self.resolve_str(item) for key, item in argument[1].items()}
        else:
            raise CfnResolutionError(f"Fn::Sub takes a string or [string, {{vars}}], got {argument!r}")
        if not isinstance(template, str):
            raise CfnResolutionError(f"Fn::Sub template must be a string, got {template!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} is an escaped, literal ${Literal}
            if name in variables:
                return variables[name]
            if "." in name and not name.startswith("AWS::"):
                logical_id, _, attribute = name.partition(".")
                return self._attribute(logical_id, attribute)
            return self._ref(name)

        return _SUB_VARIABLE.sub(substitute, template)

    def _select(self, argument: Any) -> Any:
        if not (isinstance(argument, list) and len(argument) == 2):
            raise CfnResolutionError(f"Fn::Select takes [index, [values]], got {argument!r}")
        index = int(self.resolve_str(argument[0]))
        items = self.resolve(argument[1])
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise CfnResolutionError(f"Fn::Select index {index} out of range for {items!r}")
        return items[index]

    def _cidr(self, argument: Any) -> list[str]:
        if not (isinstance(argument, list) and len(argument) == 3):
            raise CfnResolutionError(f"Fn::Cidr takes [ipBlock, count, cidrBits], got {argument!r}")
        block, count, bits = (self.resolve_str(item) for item in argument)
        network = ipaddress.ip_network(block, strict=False)
        subnets = network.subnets(new_prefix=network.max_prefixlen - int(bits))
        return [str(subnet) for _, subnet in zip(range(int(count)), subnets, strict=False)]

    def _get_azs(self, argument: Any) -> list[str]:
        region = self.resolve_str(argument) or self.pseudo.get("AWS::Region", "us-east-1")
        return [f"{region}{suffix}" for suffix in "abc"]
