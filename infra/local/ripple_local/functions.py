"""Find the template's functions and import their handlers in-process.

Neither emulator can execute Lambda code without Docker, so the local stack imports each
handler itself. Every function's module is called ``app``; importing each under its own name
(``ripple_fn_<LogicalId>``) keeps the three ``app`` modules from replacing one another in
``sys.modules``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "SERVERLESS_FUNCTION",
    "StreamEventSource",
    "function_names",
    "function_setting",
    "handler_path",
    "load_handler",
    "module_name",
    "stream_event_sources",
]

SERVERLESS_FUNCTION = "AWS::Serverless::Function"


class StreamEventSource(NamedTuple):
    """One ``Type: DynamoDB`` event of a function: what an event source mapping is made from."""

    function_id: str
    event_name: str
    properties: dict[str, Any]


def _resources(template: Mapping[str, Any]) -> Mapping[str, Any]:
    return template.get("Resources") or {}


def function_names(template: Mapping[str, Any]) -> list[str]:
    """Logical ids of every AWS::Serverless::Function, in template order."""
    return [lid for lid, res in _resources(template).items() if res.get("Type") == SERVERLESS_FUNCTION]


def _function_properties(template: Mapping[str, Any], logical_id: str) -> Mapping[str, Any]:
    resource = _resources(template).get(logical_id)
    if resource is None or resource.get("Type") != SERVERLESS_FUNCTION:
        raise KeyError(f"{logical_id} is not an {SERVERLESS_FUNCTION} of the template")
    return resource.get("Properties") or {}


def function_setting(template: Mapping[str, Any], logical_id: str, key: str, default: Any = None) -> Any:
    """A function property, falling back to Globals.Function then ``default`` (SAM's precedence)."""
    properties = _function_properties(template, logical_id)
    if key in properties:
        return properties[key]
    globals_function = (template.get("Globals") or {}).get("Function") or {}
    return globals_function.get(key, default)


def module_name(logical_id: str) -> str:
    """The unique ``sys.modules`` name a function's handler module is imported under."""
    return f"ripple_fn_{logical_id}"


def handler_path(
    template: Mapping[str, Any], logical_id: str, root_dir: str | os.PathLike[str]
) -> tuple[Path, str]:
    """Source file and attribute of a handler: ``app.handler`` -> (CodeUri/app.py, "handler")."""
    code_uri = function_setting(template, logical_id, "CodeUri")
    handler = function_setting(template, logical_id, "Handler")
    if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
        raise ValueError(f"{logical_id}: needs a local CodeUri and a Handler like module.attr")
    module, _, attribute = handler.rpartition(".")
    return Path(root_dir) / code_uri / (module.replace(".", "/") + ".py"), attribute


def load_handler(
    template: Mapping[str, Any], logical_id: str, root_dir: str | os.PathLike[str], *, fresh: bool = False
) -> Any:
    """Import a function's handler module from its file and return the handler attribute.

    A module already imported in this process is reused (the API server and a test may ask for
    the same app); ``fresh=True`` re-executes it, e.g. after the environment changed. The
    function directory is not put on ``sys.path``: function code imports the layer (``ripple``)
    and its dependencies, never sibling files, as the three ``app`` modules would clash.
    """
    path, attribute = handler_path(template, logical_id, root_dir)
    name = module_name(logical_id)
    module = None if fresh else sys.modules.get(name)
    if module is None:
        if not path.is_file():
            raise FileNotFoundError(f"{logical_id}: handler module {path} does not exist")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{logical_id}: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        # Registered before executing, as the import system does, so dataclasses, pickling and
        # typing.get_type_hints can find the module while it initialises.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise AttributeError(f"{logical_id}: {path} has no attribute {attribute!r}") from None


def stream_event_sources(template: Mapping[str, Any]) -> list[StreamEventSource]:
    """Every ``Type: DynamoDB`` event of every function, in template order."""
    sources: list[StreamEventSource] = []
    for logical_id in function_names(template):
        events = _function_properties(template, logical_id).get("Events") or {}
        for event_name, event in events.items():
            if event.get("Type") == "DynamoDB":
                sources.append(StreamEventSource(logical_id, event_name, dict(event.get("Properties") or {})))
    return sources
