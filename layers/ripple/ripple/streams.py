"""A DynamoDB stream record reduced to what the consumers need, independent of Powertools."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

INSERT, MODIFY, REMOVE = "INSERT", "MODIFY", "REMOVE"


def table_name_from_arn(arn: str) -> str:
    """``arn:aws:dynamodb:region:acct:table/NAME/stream/LABEL`` -> ``NAME``."""
    try:
        return arn.split(":", 5)[5].split("/")[1]
    except IndexError as exc:
        raise ValueError(f"not a DynamoDB stream ARN: {arn!r}") from exc


@dataclass(frozen=True)
class StreamChange:
    table: str
    event: str  # INSERT | MODIFY | REMOVE
    sequence_number: str
    new_image: dict[str, Any]
    old_image: dict[str, Any]
    keys: dict[str, Any] = field(default_factory=dict)  # the item's key (every view type has it)

    @property
    def image(self) -> dict[str, Any]:
        """The row as it is now, or as it was before it was removed."""
        return self.new_image or self.old_image

    @classmethod
    def from_record(cls, record: DynamoDBRecord) -> StreamChange:
        stream = record.dynamodb
        if stream is None or record.event_name is None or record.event_source_arn is None:
            raise ValueError("stream record without dynamodb data, event name or source ARN")
        return cls(
            table=table_name_from_arn(record.event_source_arn),
            event=record.event_name.name,
            sequence_number=stream.sequence_number or "",
            new_image=dict(stream.new_image or {}),
            old_image=dict(stream.old_image or {}),
            keys=dict(stream.keys or {}),
        )
