"""BatchWriteItem with the retry loop AWS asks for: 25 requests per call, and
``UnprocessedItems`` re-sent with exponential backoff and full jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from pynamodb.models import Model

BATCH_SIZE = 25  # DynamoDB's per-call limit for BatchWriteItem
MAX_ATTEMPTS = 8
BASE_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 2.0


class UnprocessedItemsError(Exception):
    """DynamoDB kept refusing part of a batch; the caller's retry (the stream) takes over."""


def batch_write(
    model: type[Model],
    puts: Sequence[Model] = (),
    delete_keys: Sequence[dict[str, Any]] = (),
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write ``puts`` and delete ``delete_keys`` (DynamoDB-JSON key maps) in chunks of 25.

    Returns the number of requests DynamoDB accepted. Idempotent when the keys are
    deterministic: re-putting the same item or deleting a missing one changes nothing.
    """
    requests: list[dict[str, Any]] = [{"PutRequest": {"Item": m.serialize()}} for m in puts]
    requests += [{"DeleteRequest": {"Key": k}} for k in delete_keys]
    connection = model._get_connection().connection
    table = model.Meta.table_name
    written = 0
    for start in range(0, len(requests), BATCH_SIZE):
        pending = requests[start : start + BATCH_SIZE]
        attempt = 0
        while pending:
            response = connection.dispatch("BatchWriteItem", {"RequestItems": {table: pending}})
            unprocessed = (response.get("UnprocessedItems") or {}).get(table) or []
            written += len(pending) - len(unprocessed)
            pending = unprocessed
            if pending:
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise UnprocessedItemsError(
                        f"{len(pending)} item(s) still unprocessed after {attempt} attempts"
                    )
                sleep(random.uniform(0, min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2**attempt)))
    return written
