"""BatchWriteItem and BatchGetItem as DynamoDB documents them, not as an emulator forgives them.

* At most 25 write requests and 100 keys per call, and no key twice in one call: DynamoDB
  rejects a put and a delete of the same key, or a key listed twice, with a
  ValidationException ("Provided list of item keys contains duplicates"). moto accepts both.
* A large write is several BatchWriteItem calls; they are sent concurrently
  (``WRITE_CONCURRENCY``), so a fan-out page costs about one call's latency, not forty.
* ``UnprocessedItems`` / ``UnprocessedKeys`` (DynamoDB returns them under load, for any
  subset of a call) are sent again with exponential backoff and full jitter, a bounded number
  of times (AWS: "we strongly recommend that you use an exponential backoff algorithm").
  PynamoDB's own ``Model.batch_get`` re-sends unprocessed keys at once and forever, so reads
  go through :func:`batch_get` here. Past the attempts, :class:`UnprocessedError` (a 503 for
  the API; a retried record for a stream consumer).

Retries are tenacity's (the same policy as :mod:`ripple.repositories.transactions`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pynamodb.models import Model
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from ripple.errors import ServiceUnavailableError

WRITE_BATCH_SIZE = 25  # DynamoDB's per-call limit for BatchWriteItem
GET_BATCH_SIZE = 100  # ... and for BatchGetItem
# BatchWriteItem calls in flight per batch_write (a fan-out page of 1,000 followers is 40
# calls): within botocore's default pool of 10 connections per client.
WRITE_CONCURRENCY = 8
MAX_ATTEMPTS = 8
BASE_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 2.0

M = TypeVar("M", bound=Model)
A = TypeVar("A")
R = TypeVar("R")
KeyValue = str | tuple[str, str]  # a hash key, or (hash key, range key)


_POOL: ThreadPoolExecutor | None = None


class UnprocessedError(ServiceUnavailableError):
    """DynamoDB kept leaving part of a batch unprocessed after every retry."""


class _StillUnprocessed(Exception):
    pass


def _retrying(sleep: Callable[[float], None] | None) -> Retrying:
    kwargs: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    return Retrying(
        stop=stop_after_attempt(MAX_ATTEMPTS),
        wait=wait_random_exponential(multiplier=BASE_DELAY_SECONDS, max=MAX_DELAY_SECONDS),
        retry=retry_if_exception_type(_StillUnprocessed),
        reraise=True,
        **kwargs,
    )


def _key_names(model: type[Model]) -> list[str]:
    names = [model._hash_key_attribute().attr_name]
    range_attribute = model._range_key_attribute()
    if range_attribute is not None:
        names.append(range_attribute.attr_name)
    return names


def serialize_key(model: type[Model], key: KeyValue) -> dict[str, Any]:
    """A key as DynamoDB JSON: ``"h"`` or ``("h", "r")`` -> ``{"pk": {"S": "h"}, ...}``."""
    values = key if isinstance(key, tuple) else (key,)
    attributes = [model._hash_key_attribute(), model._range_key_attribute()]
    serialized: dict[str, Any] = {}
    for attribute, value in zip(attributes, values, strict=False):
        if attribute is not None:
            serialized[attribute.attr_name] = {attribute.attr_type: attribute.serialize(value)}
    return serialized


def _identity(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


def batch_write(
    model: type[Model],
    puts: Iterable[Model] = (),
    delete_keys: Iterable[dict[str, Any]] = (),
    *,
    sleep: Callable[[float], None] | None = None,
) -> int:
    """Write ``puts`` and delete ``delete_keys`` (DynamoDB-JSON key maps), 25 per call.

    A key put twice is written once (the last item wins) and a key deleted twice is deleted
    once. A key both put and deleted is a ValueError: the caller must decide which it means.
    Returns the number of requests DynamoDB accepted; raises UnprocessedError when some
    stay unprocessed after MAX_ATTEMPTS. Idempotent when keys are deterministic.
    """
    key_names = _key_names(model)
    requests: dict[str, dict[str, Any]] = {}
    deleted: set[str] = set()
    for item in puts:
        document = item.serialize()
        requests[_identity({name: document[name] for name in key_names})] = {"PutRequest": {"Item": document}}
    for key in delete_keys:
        identity = _identity(key)
        if identity in requests and identity not in deleted:
            raise ValueError(f"batch_write: key {key} is both put and deleted in one batch")
        requests[identity] = {"DeleteRequest": {"Key": key}}
        deleted.add(identity)
    chunks = [
        list(requests.values())[start : start + WRITE_BATCH_SIZE]
        for start in range(0, len(requests), WRITE_BATCH_SIZE)
    ]
    connection = model._get_connection().connection
    table = model.Meta.table_name

    def write(chunk: list[dict[str, Any]]) -> int:
        pending, written = chunk, 0

        def send() -> None:
            nonlocal pending, written
            response = connection.dispatch("BatchWriteItem", {"RequestItems": {table: pending}})
            unprocessed = (response.get("UnprocessedItems") or {}).get(table) or []
            written += len(pending) - len(unprocessed)
            pending = unprocessed
            if pending:
                raise _StillUnprocessed

        try:
            _retrying(sleep)(send)
        except _StillUnprocessed as exc:
            raise UnprocessedError(
                f"{len(pending)} write(s) still unprocessed after {MAX_ATTEMPTS} attempts; please retry"
            ) from exc
        return written

    if len(chunks) <= 1:
        return sum(write(chunk) for chunk in chunks)
    _ = connection.client  # the botocore client exists before threads use it (sessions are not thread-safe)
    # The calls are independent (no key is in two chunks): send them concurrently. Every
    # chunk runs to its end; the first error is raised after all of them.
    futures = [_pool().submit(write, chunk) for chunk in chunks]
    return sum(future.result() for future in futures)


def concurrently(call: Callable[[A], R], arguments: Sequence[A]) -> list[R]:
    """``[call(a) for a in arguments]``, the calls made at once on the container's pool.

    For independent reads (a Query per author of a stream batch): a batch costs about one
    call's latency. Every call runs to its end; the first error is raised after all of them.
    ``call`` must not itself wait on this pool (no batch_write inside: it would deadlock).
    """
    if len(arguments) <= 1:
        return [call(a) for a in arguments]
    futures = [_pool().submit(call, a) for a in arguments]
    return [future.result() for future in futures]


def _pool() -> ThreadPoolExecutor:
    """The container's DynamoDB threads for batch_write and :func:`concurrently` (created on
    first use, kept for its life)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=WRITE_CONCURRENCY, thread_name_prefix="batch-write")
    return _POOL


def batch_get(
    model: type[M],
    keys: Sequence[KeyValue],
    *,
    attributes: Sequence[str] | None = None,
    consistent_read: bool = False,
    sleep: Callable[[float], None] | None = None,
) -> list[M]:
    """The items with these keys (missing ones are absent), 100 keys per BatchGetItem.

    Duplicate keys are asked for once. ``attributes`` limits what is read (key attributes
    are always included). Raises UnprocessedError when keys stay unprocessed after
    MAX_ATTEMPTS.
    """
    unique = list(dict.fromkeys(keys))
    if not unique:
        return []
    connection = model._get_connection().connection
    table = model.Meta.table_name
    extra: dict[str, Any] = {"ConsistentRead": consistent_read}
    if attributes is not None:
        names = list(dict.fromkeys([*_key_names(model), *attributes]))
        extra["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(names)))
        extra["ExpressionAttributeNames"] = {f"#a{i}": name for i, name in enumerate(names)}
    found: list[M] = []
    for start in range(0, len(unique), GET_BATCH_SIZE):
        pending = [serialize_key(model, key) for key in unique[start : start + GET_BATCH_SIZE]]

        def fetch() -> None:
            nonlocal pending
            response = connection.dispatch(
                "BatchGetItem", {"RequestItems": {table: {"Keys": pending, **extra}}}
            )
            found.extend(
                model.from_raw_data(item) for item in (response.get("Responses") or {}).get(table, [])
            )
            pending = ((response.get("UnprocessedKeys") or {}).get(table) or {}).get("Keys") or []
            if pending:
                raise _StillUnprocessed

        try:
            _retrying(sleep)(fetch)
        except _StillUnprocessed as exc:
            raise UnprocessedError(
                f"{len(pending)} key(s) still unprocessed after {MAX_ATTEMPTS} attempts; please retry"
            ) from exc
    return found
