"""DynamoDB on-demand request units for one API call, from its request and response.

The rules are AWS's (DynamoDB developer guide, "Read/write capacity mode"):

* reads: 1 unit per 4 KB (rounded up) strongly consistent, half of that eventually
  consistent; GetItem/BatchGetItem round each item up, Query rounds the sum of the items it
  returns; a read of a missing item, or a Query that returns nothing, still costs the
  minimum; GSI queries are eventually consistent;
* writes: 1 unit per 1 KB (rounded up) per item; each secondary index (global or local)
  whose item is created, changed or deleted costs its own write; transactional reads and writes cost
  twice the standard units on the table (index writes are standard).

UpdateItem only names the changed attributes, so an update is charged 1 KB (every item
Ripple updates - users, posts - is well under 1 KB). Stream reads by Lambda are free.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple


class TableInfo(NamedTuple):
    """What charging needs to know about a table: its key and its indexes' keys."""

    logical_id: str
    key: tuple[str, ...]
    gsis: tuple[tuple[str, ...], ...] = ()


class Charge(NamedTuple):
    table: str  # logical id, or the physical name when unknown
    kind: str  # "read" | "write"
    units: float


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one AttributeValue as DynamoDB counts them."""
    ((kind, raw),) = value.items()
    if kind == "N":
        digits = str(Decimal(str(raw)).normalize()).lstrip("-").replace(".", "").lstrip("0") or "0"
        return 1 + math.ceil(len(digits) / 2)
    if kind in ("S", "B"):
        return len(str(raw).encode()) if kind == "S" else len(raw)
    if kind in ("SS", "BS", "NS"):
        return sum(value_size({"N": x}) if kind == "NS" else len(str(x).encode()) for x in raw)
    if kind in ("L", "M"):
        entries = raw.items() if kind == "M" else (("", x) for x in raw)
        return 3 + sum(len(k.encode()) + 1 + value_size(v) for k, v in entries)
    return 1 if kind in ("BOOL", "NULL") else 0


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes of an item: attribute names plus values."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def _read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


def _write_units(item: Mapping[str, Any]) -> float:
    return float(max(1, math.ceil(item_size(item) / 1024)))


class Charger:
    """Charges calls against known tables (physical name -> :class:`TableInfo`)."""

    def __init__(self, tables: Mapping[str, TableInfo]) -> None:
        self.tables = dict(tables)

    @classmethod
    def from_template(cls, template: Mapping[str, Any], physical: Mapping[str, str]) -> Charger:
        """From template.yaml and the local logical -> physical table names."""
        infos = {}
        for logical_id, name in physical.items():
            props = template["Resources"][logical_id]["Properties"]
            indexes = props.get("GlobalSecondaryIndexes", []) + props.get("LocalSecondaryIndexes", [])
            keys = [props["KeySchema"], *(i["KeySchema"] for i in indexes)]
            key, *gsis = (tuple(k["AttributeName"] for k in schema) for schema in keys)
            infos[name] = TableInfo(logical_id, key, tuple(gsis))
        return cls(infos)

    def name(self, table: str) -> str:
        """A known table's logical id; any other table's own name."""
        return self.tables[table].logical_id if table in self.tables else table

    def _index_writes(self, table: str, attributes: Sequence[str] | None) -> float:
        """Index writes of a put (``attributes``: the item's) or a delete (None: a sparse index
        may hold no copy, so only indexes keyed on the table's key count)."""
        info = self.tables.get(table)
        keys = (info.key if attributes is None else attributes) if info else ()
        return float(sum(all(k in keys for k in gsi) for gsi in info.gsis)) if info else 0.0

    def _index_updates(self, table: str, body: Mapping[str, Any]) -> float:
        """Index writes of an update: indexes keyed on a changed (named) non-key attribute."""
        info = self.tables.get(table)
        named = list((body.get("ExpressionAttributeNames") or {}).values())
        changed = [g for g in info.gsis if any(k in named and k not in info.key for k in g)] if info else []
        return float(len(changed))

    def charge(
        self, op: str, params: Mapping[str, Any], response: Mapping[str, Any] | None
    ) -> Iterator[Charge]:
        """The request units of one DynamoDB call (none for control-plane calls)."""
        table, response = params.get("TableName", ""), response or {}
        if op == "GetItem":
            units = _read_units(item_size(response.get("Item") or {}), bool(params.get("ConsistentRead")))
            yield Charge(self.name(table), "read", units)
        elif op in ("Query", "Scan"):
            size = sum(item_size(i) for i in response.get("Items") or [])
            consistent = bool(params.get("ConsistentRead")) and not params.get("IndexName")
            yield Charge(self.name(table), "read", _read_units(size, consistent))
        elif op == "BatchGetItem":
            for name, request in (params.get("RequestItems") or {}).items():
                consistent = bool(request.get("ConsistentRead"))
                items = (response.get("Responses") or {}).get(name) or []
                missing = max(0, len(request.get("Keys") or []) - len(items))  # charged like a found one
                units = sum(_read_units(item_size(i), consistent) for i in items)
                yield Charge(self.name(name), "read", units + missing * _read_units(0, consistent))
        elif op == "PutItem":
            units = _write_units(params["Item"]) + self._index_writes(table, list(params["Item"]))
            yield Charge(self.name(table), "write", units)
        elif op == "UpdateItem":
            yield Charge(self.name(table), "write", 1.0 + self._index_updates(table, params))
        elif op == "DeleteItem":
            yield Charge(self.name(table), "write", 1.0 + self._index_writes(table, None))
        elif op == "BatchWriteItem":
            unprocessed = response.get("UnprocessedItems") or {}
            for name, requests in (params.get("RequestItems") or {}).items():
                units = 0.0
                for request in requests[: len(requests) - len(unprocessed.get(name) or [])]:
                    item = request.get("PutRequest", {}).get("Item")
                    put = item and _write_units(item) + self._index_writes(name, list(item))
                    units += put or 1.0 + self._index_writes(name, None)
                yield Charge(self.name(name), "write", units)
        elif op == "TransactWriteItems":
            for entry in params.get("TransactItems") or []:
                ((kind, body),) = entry.items()
                name = body["TableName"]
                if kind == "ConditionCheck":  # a transactional read of the item
                    yield Charge(self.name(name), "read", 2.0)
                elif kind == "Put":
                    units = 2 * _write_units(body["Item"]) + self._index_writes(name, list(body["Item"]))
                    yield Charge(self.name(name), "write", units)
                elif kind == "Update":
                    yield Charge(self.name(name), "write", 2.0 + self._index_updates(name, body))
                else:  # Delete
                    yield Charge(self.name(name), "write", 2.0 + self._index_writes(name, None))
