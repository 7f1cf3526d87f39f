"""ULIDs sort by time and cursors round-trip; bad cursors are a 400, not a crash."""

import pytest

from ripple.cursor import decode_cursor, encode_cursor
from ripple.errors import ValidationError
from ripple.ids import is_ulid, new_ulid, ulid_timestamp_ms


def test_ulids_sort_in_creation_order_and_encode_their_time() -> None:
    ids = [new_ulid(now_ms=1_700_000_000_000 + i) for i in range(50)]
    assert ids == sorted(ids)
    assert all(is_ulid(i) for i in ids)
    assert ulid_timestamp_ms(ids[7]) == 1_700_000_000_007


def test_ulids_in_the_same_millisecond_are_distinct() -> None:
    ids = {new_ulid(now_ms=1_700_000_000_000) for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    "value", ["", "x" * 26, "01JDQ7Z8M3K2P4R6T8V0W2X4YU", "8" + "0" * 25, "01jdq7z8m3k2p4r6t8v0w2x4y6"]
)
def test_is_ulid_rejects_malformed_values(value: str) -> None:
    assert not is_ulid(value)


def test_cursor_round_trip() -> None:
    post_id = new_ulid()
    assert decode_cursor(encode_cursor(post_id)) == post_id
    assert decode_cursor(None) is None
    assert decode_cursor("") is None


@pytest.mark.parametrize("cursor", ["!!!", "e30", encode_cursor("not-a-ulid"), "eyJhZnRlciI6IDF9"])
def test_invalid_cursors_are_validation_errors(cursor: str) -> None:
    with pytest.raises(ValidationError):
        decode_cursor(cursor)
