"""DynamoDB on-demand request units for one API call, from its request and response.

The rules are AWS's (DynamoDB developer guide, "Read/write capacity mode"):

* reads: 1 unit per 4 KB (rounded up) strongly consistent, half of that eventually
  consistent; GetItem/BatchGetItem round each item up, Query rounds the sum of the items it
  returns; a read of a missing item, or a Query that returns nothing, still costs the
  minimum; GSI queries are eventually consistent;
* writes: 1 unit per 1 KB (rounded up) per item; each global secondary index whose item is
  created, changed or deleted costs its own write; transactional reads and writes cost
  twice the standard units on the table (index writes are standard).

UpdateItem only names the changed attributes, so an update is charged 1 KB (every item
Ripple updates - users, posts - is well under 1 KB). Stream reads by Lambda are free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class TableInfo:
    """What charging needs to know about a table: its key and its indexes' keys."""

    logical_id: str
    key: tuple[str, ...]
    gsis: tuple[tuple[str, ...], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Charge:
    table: str  # logical id, or the physical name when unknown
    kind: str  # "read" | "write"
    units: float


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one AttributeValue as DynamoDB counts them."""
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        digits = str(Decimal(str(raw)).normalize()).lstrip("-").replace(".", "").lstrip("0") or "0"
        return 1 + math.ceil(len(digits) / 2)
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(len(str(x).encode()) for x in raw)
    if kind == "NS":
        return sum(value_size({"N": x}) for x in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(v) for k, v in raw.items())
    return 0


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes of an item: attribute names plus values."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def _read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


def _write_units(size: int) -> float:
    return float(max(1, math.ceil(size / 1024)))


class Charger:
    """Charges calls against known tables (physical name -> :class:`TableInfo`)."""

    def __init__(self, tables: Mapping[str, TableInfo]) -> None:
        self.tables = dict(tables)

    def _name(self, table: str) -> str:
        info = self.tables.get(table)
        return info.logical_id if info else table

    def _gsi_writes(self, table: str, attributes: Sequence[str] | None) -> float:
        """Index writes of a put (``attributes`` = the item's) or a delete (None)."""
        info = self.tables.get(table)
        if info is None:
            return 0.0
        units = 0.0
        for keys in info.gsis:
            if attributes is None:
                affected = all(k in info.key for k in keys)  # a sparse index may hold no copy
            else:
                affected = all(k in attributes for k in keys)
            units += 1.0 if affected else 0.0
        return units

    def charge(
        self, operation: str, params: Mapping[str, Any], response: Mapping[str, Any] | None
    ) -> list[Charge]:
        """The request units of one DynamoDB call (empty for control-plane calls)."""
        response = response or {}
        handler = getattr(self, f"_{operation}", None)
        return list(handler(params, response)) if handler else []

    # ------------------------------------------------------------------ reads
    def _GetItem(self, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        size = item_size(response.get("Item") or {})
        return [
            Charge(
                self._name(params["TableName"]), "read", _read_units(size, bool(params.get("ConsistentRead")))
            )
        ]

    def _BatchGetItem(self, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        charges = []
        returned = response.get("Responses") or {}
        for table, request in (params.get("RequestItems") or {}).items():
            consistent = bool(request.get("ConsistentRead"))
            items = returned.get(table) or []
            units = sum(_read_units(item_size(i), consistent) for i in items)
            missing = max(0, len(request.get("Keys") or []) - len(items))
            units += missing * _read_units(0, consistent)
            charges.append(Charge(self._name(table), "read", units))
        return charges

    def _Query(self, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        size = sum(item_size(i) for i in response.get("Items") or [])
        consistent = bool(params.get("ConsistentRead")) and not params.get("IndexName")
        return [Charge(self._name(params["TableName"]), "read", _read_units(size, consistent))]

    _Scan = _Query

    # ------------------------------------------------------------------ writes
    def _PutItem(self, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        table, item = params["TableName"], params["Item"]
        units = _write_units(item_size(item)) + self._gsi_writes(table, list(item))
        return [Charge(self._name(table), "write", units)]

    def _UpdateItem(self, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        table = params["TableName"]
        named = list((params.get("ExpressionAttributeNames") or {}).values())
        return [Charge(self._name(table), "write", 1.0 + self._gsi_updates(table, named))]

    def _gsi_updates(self, table: str, named: Sequence[str]) -> float:
        info = self.tables.get(table)
        if info is None:
            return 0.0
        return float(sum(1 for keys in info.gsis if any(k in named and k not in info.key for k in keys)))

    def _DeleteItem(self, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        table = params["TableName"]
        return [Charge(self._name(table), "write", 1.0 + self._gsi_writes(table, None))]

    def _BatchWriteItem(self, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        charges = []
        unprocessed = response.get("UnprocessedItems") or {}
        for table, requests in (params.get("RequestItems") or {}).items():
            left = len(unprocessed.get(table) or [])
            units = 0.0
            for request in requests[: len(requests) - left]:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    units += _write_units(item_size(item)) + self._gsi_writes(table, list(item))
                else:
                    units += 1.0 + self._gsi_writes(table, None)
            charges.append(Charge(self._name(table), "write", units))
        return charges

    def _TransactWriteItems(self, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        charges = []
        for entry in params.get("TransactItems") or []:
            (kind, body), *_ = entry.items()
            table = body["TableName"]
            if kind == "Put":
                item = body["Item"]
                units = 2 * _write_units(item_size(item)) + self._gsi_writes(table, list(item))
            elif kind == "Update":
                named = list((body.get("ExpressionAttributeNames") or {}).values())
                units = 2.0 + self._gsi_updates(table, named)
            elif kind == "Delete":
                units = 2.0 + self._gsi_writes(table, None)
            else:  # ConditionCheck: a transactional read of the item
                charges.append(Charge(self._name(table), "read", 2.0))
                continue
            charges.append(Charge(self._name(table), "write", units))
        return charges


def tables_from_template(template: Mapping[str, Any], physical: Mapping[str, str]) -> dict[str, TableInfo]:
    """TableInfo per physical name, from template.yaml and the local logical -> physical names."""
    infos: dict[str, TableInfo] = {}
    for logical_id, name in physical.items():
        props = template["Resources"][logical_id]["Properties"]
        key = tuple(k["AttributeName"] for k in props["KeySchema"])
        gsis = tuple(
            tuple(k["AttributeName"] for k in index["KeySchema"])
            for index in props.get("GlobalSecondaryIndexes") or []
        )
        infos[name] = TableInfo(logical_id, key, gsis)
    return infos
