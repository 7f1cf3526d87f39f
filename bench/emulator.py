"""The emulator the bench runs: moto server, optionally with DynamoDB's cost model.

Two operations of stock moto (5.2) cost time proportional to the size of the whole table,
where DynamoDB's cost depends only on the items touched, so a local stack gets slower with
every post and follow it stores (the bench measures both: see the report):

* TransactWriteItems deep-copies every table it names (items and stream records) to restore
  it if a condition fails. The copy is not thread-safe either (concurrent transactions fail
  with "dictionary changed size during iteration", an HTTP 500), and a rolled-back
  transaction restores whole tables, undoing writes other clients made meanwhile.
* Query lists and sorts every item of the table, then keeps the partition (or, on an
  index, the items with that index key) - a feed page, a follower page, an author's posts.

For measuring Ripple, the bench's emulator ("patched") changes exactly these two: a
transaction checks every condition first and then applies the writes (all or nothing, as on
AWS; transactions are serialized with a lock), and a Query starts from the partition, or from
a per-index map kept up to date with the table, and then runs moto's own query code on those
candidates (same ordering, conditions, filters, limits and pagination). Everything else is
stock moto. ``--emulator stock`` runs it unpatched.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.config import REPO_ROOT

_LOCK = threading.Lock()


def install_transaction_patch() -> None:
    """Replace moto's deep-copying TransactWriteItems with a check-then-apply one."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.models import DynamoDBBackend

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        with _LOCK:
            seen: set[tuple[str, str]] = set()
            plan: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
            errors: list[Any] = []
            for entry in transact_items:
                if len(entry) > 1:
                    raise TransactWriteSingleOpException
                op_type, op = next(iter(entry.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                if op_type == "Put":
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = op["Item"][table.range_key_attr]
                else:
                    key = op["Key"]
                marker = (str(table_name), str(dict(sorted(key.items()))))
                if marker in seen:
                    raise MultipleTransactionsException()
                seen.add(marker)
                original_item = None
                condition = op.get("ConditionExpression")
                current = self.get_item(table_name, key)
                if condition is not None:
                    check = get_filter_expression(
                        condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                    )
                    if not check.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        errors.append(
                            ("ConditionalCheckFailed", str(ConditionalCheckFailed().message), original_item)
                        )
                        continue
                errors.append((None, None, None))
                plan.append((op_type, op, key))
            if any(code is not None for code, _, _ in errors):
                raise TransactionCanceledException(errors)  # nothing written: nothing to undo
            for op_type, op, key in plan:
                names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    self.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                                  expression_attribute_values=values)  # fmt: skip
                elif op_type == "Delete":
                    self.delete_item(op["TableName"], key, expression_attribute_names=names,
                                     expression_attribute_values=values)  # fmt: skip
                elif op_type == "Update":
                    self.update_item(
                        op["TableName"],
                        key,
                        update_expression=op["UpdateExpression"],
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


_local = threading.local()  # the candidates of the query this thread is running
_versions: dict[int, int] = {}  # id(table) -> writes so far
_indexes: dict[tuple[int, str], tuple[int, dict[tuple[str, str], list[Any]]]] = {}
_index_lock = threading.Lock()


def _key(value: Any) -> tuple[str, str]:
    return (str(value.type), str(value.value))


def install_query_patch() -> None:
    """Make Query start from the partition or an index map instead of the whole table."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    all_items = Table.all_items
    query = Table.query
    put_item = Table.put_item
    delete_item = Table.delete_item
    update_item = DynamoDBBackend.update_item

    def patched_all_items(self: Any) -> Any:
        override = getattr(_local, "candidates", None)
        if override is not None and override[0] is self:
            return override[1]
        return all_items(self)

    def bump(table: Any) -> None:
        _versions[id(table)] = _versions.get(id(table), 0) + 1

    def patched_put(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return put_item(self, *args, **kwargs)
        finally:
            bump(self)

    def patched_delete(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return delete_item(self, *args, **kwargs)
        finally:
            bump(self)

    def patched_update(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return update_item(self, table_name, *args, **kwargs)
        finally:
            if table_name in self.tables:
                bump(self.tables[table_name])

    def partition(table: Any, hash_value: Any) -> list[Any]:
        found = table.items.get(hash_value)
        if found is None:
            return []
        return list(found.values()) if table.range_key_attr else [found]

    def index_map(table: Any, attribute: str, index_name: str) -> dict[tuple[str, str], list[Any]]:
        version = _versions.get(id(table), 0)
        cached = _indexes.get((id(table), index_name))
        if cached is not None and cached[0] == version:
            return cached[1]
        built: dict[tuple[str, str], list[Any]] = {}
        for item in all_items(table):
            value = item.attrs.get(attribute)
            if value is not None:
                built.setdefault(_key(value), []).append(item)
        with _index_lock:
            _indexes[(id(table), index_name)] = (version, built)
        return built

    def candidates(table: Any, hash_key: Any, index_name: str | None, conditions: Any) -> list[Any] | None:
        if conditions:
            if len(conditions) != 1:
                return None
            attribute, value = conditions[0]
        else:
            attribute, value = None, hash_key
        if value is None:
            return None
        if not index_name:
            return partition(table, value)
        index = next((i for i in table.all_indexes() if i.name == index_name), None)
        if index is None:
            return None
        hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
        if len(hashes) != 1 or (attribute is not None and attribute != hashes[0]):
            return None
        return list(index_map(table, hashes[0], index_name).get(_key(value), []))

    signature = inspect.signature(query)

    def patched_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, hash_key, *args, **kwargs).arguments
        found = candidates(self, hash_key, bound.get("index_name"), bound.get("hash_key_conditions"))
        if found is None:
            return query(self, hash_key, *args, **kwargs)
        _local.candidates = (self, found)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _local.candidates = None

    Table.all_items = patched_all_items  # type: ignore[method-assign]
    Table.query = patched_query  # type: ignore[method-assign]
    Table.put_item = patched_put  # type: ignore[method-assign]
    Table.delete_item = patched_delete  # type: ignore[method-assign]
    DynamoDBBackend.update_item = patched_update  # type: ignore[method-assign]


def serve(argv: list[str]) -> None:
    """``python -m bench.emulator HOST PORT patched|stock``: run moto's server."""
    host, port, mode = argv
    if mode == "patched":
        install_transaction_patch()
        install_query_patch()
    from moto.server import main

    main(["-H", host, "-p", port])


class Emulator:
    """A moto server process on 127.0.0.1:port, started and stopped by pid."""

    def __init__(self, port: int, log_path: Path, patched: bool = True) -> None:
        self.port = port
        self.log_path = log_path
        self.patched = patched
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> Emulator:
        from bench.stack import python_path_env

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.emulator", "127.0.0.1", str(self.port),
                 "patched" if self.patched else "stock"],
                cwd=REPO_ROOT,
                env=python_path_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulator did not start; see {self.log_path}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/moto-api/", timeout=1.0):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Kill it (moto ignores SIGTERM; it holds nothing worth a clean shutdown)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10.0)


if __name__ == "__main__":
    serve(sys.argv[1:])
