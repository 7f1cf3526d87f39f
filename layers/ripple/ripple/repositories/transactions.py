"""DynamoDB transactions and the one question callers ask of a failed one: which
condition failed?"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from ripple.repositories.models import UserModel


class ConditionFailed(Exception):
    """Condition ``index`` (0-based, in the order items were added) did not hold."""

    def __init__(self, index: int) -> None:
        super().__init__(f"transaction condition {index} failed")
        self.index = index


@contextmanager
def transaction() -> Iterator[TransactWrite]:
    """A TransactWrite on the models' connection; a failed condition becomes ConditionFailed."""
    connection = UserModel._get_connection().connection  # same endpoint and timeouts
    try:
        # The token makes DynamoDB apply a retried transaction (a lost response) only once.
        with TransactWrite(connection=connection, client_request_token=uuid.uuid4().hex) as tx:
            yield tx
    except TransactWriteError as exc:
        for index, reason in enumerate(exc.cancellation_reasons or []):
            if reason is not None and reason.code == "ConditionalCheckFailed":
                raise ConditionFailed(index) from exc
        raise
