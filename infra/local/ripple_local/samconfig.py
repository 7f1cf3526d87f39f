"""Read an environment of samconfig.toml, so local and deployed stacks share their parameters.

``sam deploy --config-env local`` and the local stack must see the same parameter values, so
the overrides are read from samconfig.toml rather than repeated in Python.
"""

from __future__ import annotations

import os
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SamEnvironment", "load_sam_environment", "parameter_overrides", "parse_parameter_overrides"]

# Where SAM looks for a setting, most specific first: the deploy command, then [env.global].
_COMMAND_ORDER = ("deploy", "global")


@dataclass(frozen=True)
class SamEnvironment:
    """The settings of one samconfig environment that the local stack cares about."""

    name: str
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    stack_name: str | None = None
    region: str | None = None


def parse_parameter_overrides(value: str | list[str]) -> dict[str, str]:
    """Parse ``Key="value" Key2="value2"`` (or SAM's list form) into a dict.

    shlex handles the quoting exactly like the shell that ``sam deploy --parameter-overrides``
    was designed for, so values may contain spaces when quoted.
    """
    items = [value] if isinstance(value, str) else list(value)
    result: dict[str, str] = {}
    for item in items:
        for token in shlex.split(item):
            key, sep, val = token.partition("=")
            if not sep or not key:
                raise ValueError(f"parameter override {token!r} is not Key=value")
            result[key] = val
    return result


def _setting(environment: Mapping[str, Any], key: str) -> Any:
    for command in (*_COMMAND_ORDER, *sorted(set(environment) - set(_COMMAND_ORDER))):
        section = environment.get(command)
        if isinstance(section, Mapping):
            parameters = section.get("parameters")
            if isinstance(parameters, Mapping) and key in parameters:
                return parameters[key]
    return None


def load_sam_environment(path: str | os.PathLike[str], environment: str = "local") -> SamEnvironment:
    """Read ``[environment.*.parameters]`` of a samconfig.toml file."""
    with open(path, "rb") as stream:
        document = tomllib.load(stream)
    section = document.get(environment)
    if not isinstance(section, Mapping):
        raise KeyError(f"{path}: no [{environment}.*] environment in samconfig")
    overrides = _setting(section, "parameter_overrides")
    return SamEnvironment(
        name=environment,
        parameter_overrides=parse_parameter_overrides(overrides) if overrides else {},
        stack_name=_setting(section, "stack_name"),
        region=_setting(section, "region"),
    )


def parameter_overrides(path: str | os.PathLike[str], environment: str = "local") -> dict[str, str]:
    """The ``parameter_overrides`` of one samconfig environment as a dict."""
    return load_sam_environment(path, environment).parameter_overrides
