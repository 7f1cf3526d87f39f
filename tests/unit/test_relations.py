"""Blocks and mutes, the pure parts: who hides whom (``ripple.domain.Relations``), the typed
members of a reader's cached set (``ripple.cache.relations``), the fan-out job ids of mutes
and the wire order of a transaction holding condition checks."""

from __future__ import annotations

import pytest

from ripple.cache.relations import COMPLETE, changed_members, members_of, parse
from ripple.domain import BLOCK, MUTE, Relations
from ripple.repositories.blocks import edge_key
from ripple.repositories.fanout_jobs import MUTE as MUTE_JOB
from ripple.repositories.fanout_jobs import UNMUTE, FanoutJob
from ripple.repositories.models import BlockModel, FollowModel
from ripple.repositories.transactions import Transaction

R = Relations(
    blocks=frozenset({"b1"}),
    mutes=frozenset({"m1"}),
    blocked_by=frozenset({"x1"}),
    muted_by=frozenset({"y1"}),
)


def test_a_reader_never_sees_whom_they_block_or_mute_or_who_blocks_them() -> None:
    assert R.hidden_authors() == {"b1", "m1", "x1"}  # y1 muting me hides nothing from me


def test_an_authors_posts_reach_nobody_who_blocks_or_mutes_them_nor_whom_they_block() -> None:
    assert R.hidden_readers() == {"b1", "x1", "y1"}  # m1 (whom I mute) still gets my posts


def test_lists_hide_the_parties_of_a_block_only() -> None:
    assert R.blocked_parties() == {"b1", "x1"}


def test_the_cached_set_says_the_readers_relations_and_only_when_complete() -> None:
    members = members_of(R)
    assert sorted(members) == ["B:x1", "b:b1", "m:m1"]  # muted_by is not the reader's concern
    assert parse(members) is None  # no marker: loaded from DynamoDB
    assert parse([COMPLETE, *members]) == Relations(
        blocks=frozenset({"b1"}), mutes=frozenset({"m1"}), blocked_by=frozenset({"x1"})
    )
    assert parse([COMPLETE.encode()]) == Relations()  # an empty, complete set (bytes from Redis)


def test_write_through_touches_both_sets_for_a_block_and_the_muters_for_a_mute() -> None:
    assert changed_members(BLOCK, "a", "b") == [("a", "b:b"), ("b", "B:a")]
    assert changed_members(MUTE, "a", "b") == [("a", "m:b")]
    with pytest.raises(ValueError, match="unknown relation kind"):
        changed_members("follow", "a", "b")


def test_mute_jobs_are_distinct_per_mute() -> None:
    first = FanoutJob(MUTE_JOB, "author", "reader", 1, after="")
    assert first.job_id == "mute#reader#author#1"
    assert first.job_id != FanoutJob(MUTE_JOB, "author", "reader", 2, after="").job_id
    assert FanoutJob(UNMUTE, "author", "reader", 1, after="").job_id != first.job_id


def test_a_block_and_a_mute_of_one_account_are_two_rows() -> None:
    assert edge_key(BLOCK, "t") == "block#t" and edge_key(MUTE, "t") == "mute#t"


def test_condition_checks_go_first_on_the_wire() -> None:
    tx = Transaction()
    tx.save("edge", BlockModel(user_id="a", edge="block#b", target_id="b", kind=BLOCK, created_at=1))
    tx.check(
        "follow0", FollowModel(follower_id="a", followee_id="b"), FollowModel.followee_id.does_not_exist()
    )
    assert tx.wire_order() == ["follow0", "edge"]
