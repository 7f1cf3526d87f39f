"""DynamoDB transactions: named items, retried conflicts, and which condition failed.

A :class:`Transaction` is a list of named writes, built once and committed with
``commit()``. Names, not positions, say which condition failed: PynamoDB sends a
transaction's items grouped by kind (condition checks, deletes, puts, updates), and
DynamoDB's ``CancellationReasons`` follow that order, not the order items were added.

DynamoDB cancels a transaction with ``TransactionConflict`` when another transaction or a
plain write touches one of its items at the same moment (a hot post's likes, a popular
account's follows). Nothing was written, so the whole transaction is sent again, with a
fresh ClientRequestToken, after an exponential, fully jittered backoff (the retry policy
AWS's own SDKs use). Past ``MAX_ATTEMPTS`` it is a :class:`TransactionConflictError`: a 503
that changed nothing. Throttling of a single item (``ThrottlingError`` reasons) is treated
the same way. No emulator produces conflicts; ``ripple_local.fault_proxy`` injects them.

A lost response (the transaction committed, the answer never arrived) is retried by botocore
with the same token, which DynamoDB answers with success without applying it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite
from tenacity import (
    Retrying,
    retry_base,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from ripple.errors import ServiceUnavailableError
from ripple.repositories.models import UserModel

MAX_ATTEMPTS = 5  # ~0.7 s of backoff at most: a request still answers well inside API Gateway's 29 s
BACKOFF_BASE_SECONDS = 0.025
BACKOFF_MAX_SECONDS = 0.4
# Cancellation reasons that mean "nothing was written; the same transaction may succeed later".
RETRYABLE_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})

# PynamoDB's order of a transaction's items on the wire (pynamodb/connection/base.py
# transact_write_items): condition checks, deletes, puts, updates.
_WIRE_ORDER = ("condition_check", "delete", "save", "update")

Kind = Literal["condition_check", "delete", "save", "update"]


class ConditionFailed(Exception):
    """The condition of the item named ``item`` did not hold; nothing was written."""

    def __init__(self, item: str) -> None:
        super().__init__(f"transaction condition on {item!r} failed")
        self.item = item


class TransactionConflictError(ServiceUnavailableError):
    """DynamoDB kept cancelling the transaction for conflicts; nothing was written (HTTP 503)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__(
            "the data is being changed by another request; nothing was written, please retry",
            retry_after=1,
        )
        self.reasons = tuple(reasons)


class _Retryable(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class _Item:
    name: str
    kind: Kind
    model: Model
    condition: Condition | None
    actions: tuple[Action, ...] = ()


def conflict_retrying(attempts: int, retry: retry_base) -> Retrying:
    """Up to ``attempts`` tries of a write that lost a race, each after a jittered exponential
    backoff (``BACKOFF_*``), the last failure re-raised: for transactions and the writes built
    from one (a block rebuilt when the follows moved, ``ripple.repositories.blocks``)."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=BACKOFF_BASE_SECONDS, max=BACKOFF_MAX_SECONDS),
        retry=retry,
        reraise=True,
    )


@dataclass
class Transaction:
    """Named writes committed atomically: ``tx.save("edge", row, condition=...)``, then
    ``tx.commit()``. Each name is unique within the transaction."""

    items: list[_Item] = field(default_factory=list)

    def _add(self, item: _Item) -> Transaction:
        if any(existing.name == item.name for existing in self.items):
            raise ValueError(f"transaction item {item.name!r} added twice")
        self.items.append(item)
        return self

    def save(self, name: str, model: Model, condition: Condition | None = None) -> Transaction:
        """Put ``model`` (the whole item)."""
        return self._add(_Item(name, "save", model, condition))

    def update(
        self, name: str, model: Model, actions: Sequence[Action], condition: Condition | None = None
    ) -> Transaction:
        """Apply update ``actions`` to the item keyed like ``model``."""
        return self._add(_Item(name, "update", model, condition, tuple(actions)))

    def delete(self, name: str, model: Model, condition: Condition | None = None) -> Transaction:
        """Delete the item keyed like ``model``."""
        return self._add(_Item(name, "delete", model, condition))

    def check(self, name: str, model: Model, condition: Condition) -> Transaction:
        """Require ``condition`` of the item keyed like ``model`` (which need not exist),
        writing nothing to it: a ConditionCheck."""
        return self._add(_Item(name, "condition_check", model, condition))

    def wire_order(self) -> list[str]:
        """The item names in the order DynamoDB receives them (and reports reasons in)."""
        return [item.name for kind in _WIRE_ORDER for item in self.items if item.kind == kind]

    def commit(self) -> None:
        """Write every item or none.

        Raises ConditionFailed (naming the item) when a condition does not hold, and
        TransactionConflictError when conflicts persist past MAX_ATTEMPTS; other DynamoDB
        errors (throttling of the whole request after botocore's retries included) propagate.
        """
        try:
            conflict_retrying(MAX_ATTEMPTS, retry_if_exception_type(_Retryable))(self._attempt)
        except _Retryable as exc:
            raise TransactionConflictError(exc.reasons) from exc

    def _attempt(self) -> None:
        connection = UserModel._get_connection().connection  # the models' endpoint and timeouts
        try:
            # A fresh token per attempt: a cancelled attempt wrote nothing, so sending it again is
            # safe; botocore's own retries of one attempt reuse its token (idempotent on AWS).
            with TransactWrite(connection=connection, client_request_token=uuid.uuid4().hex) as tx:
                for item in self.items:
                    _apply(tx, item)
        except TransactWriteError as exc:
            codes = [
                reason.code if reason is not None else "None" for reason in exc.cancellation_reasons or []
            ]
            names = self.wire_order()
            for name, code in zip(names, codes, strict=False):
                if code == "ConditionalCheckFailed":
                    raise ConditionFailed(name) from exc
            retryable = [code for code in codes if code in RETRYABLE_REASONS]
            if retryable:
                raise _Retryable(retryable) from exc
            raise


def _apply(tx: TransactWrite, item: _Item) -> None:
    if item.kind == "condition_check":
        assert item.condition is not None
        key = item.model._get_keys()  # {hash attr name: value, range attr name: value}
        hash_name = type(item.model)._hash_key_attribute().attr_name
        range_attribute = type(item.model)._range_key_attribute()
        range_key = key.get(range_attribute.attr_name) if range_attribute is not None else None
        tx.condition_check(type(item.model), key[hash_name], range_key, condition=item.condition)
    elif item.kind == "save":
        tx.save(item.model, condition=item.condition)
    elif item.kind == "update":
        tx.update(item.model, actions=list(item.actions), condition=item.condition)
    else:
        tx.delete(item.model, condition=item.condition)
