"""Fan-out of a stream batch (``ripple.services.fanout``): the calls a batch makes, with
in-process fakes of the repositories (the emulator-backed behaviour is in
tests/integration/test_fanout.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from ripple.domain import FeedEntry, Post, Relations
from ripple.ids import new_ulid, ulid_floor
from ripple.repositories.fanout_jobs import PUSH, REBUILD, FanoutJob
from ripple.repositories.users import AuthorState
from ripple.services.fanout import FanoutBatch, FanoutConsumer, FanoutService
from ripple.stream_processing import PartialCommit
from ripple.streams import INSERT, REMOVE, StreamChange

PAGE = 3
GRACE_MS = 1_000


class Fakes:
    """The repositories fan-out uses, as dicts; every call is counted."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.followers: dict[str, list[tuple[str, int]]] = {}
        self.marked: dict[str, int] = {}
        self.posts: set[str] = set()
        self.feed: set[tuple[str, str]] = set()
        self.jobs: list[FanoutJob] = []
        self.away: set[str] = set()
        self.following: dict[str, list[tuple[str, int]]] = {}
        self.authored: dict[str, list[Post]] = {}  # newest first
        self.finished: list[tuple[str, int]] = []
        # blocks: each relations_of call answers the next of these (the last one repeats)
        self.relation_answers: list[dict[str, Relations]] = [{}]
        # accounts no block or mute hides (may_hide False): each fanout_states call answers
        # the next of these (the last one repeats); by default every author may be hidden
        self.unhidden_answers: list[set[str]] = [set()]

    # blocks
    def relations_of(self, ids: Iterable[str]) -> dict[str, Relations]:
        self.calls["relations_of"] += 1
        answers = self.relation_answers
        answer = answers[0] if len(answers) == 1 else answers.pop(0)
        return {i: answer.get(i, Relations()) for i in ids}

    def relations(self, user_id: str) -> Relations:
        return self.relations_of([user_id])[user_id]

    # users
    def fanout_states(self, ids: Iterable[str]) -> dict[str, AuthorState]:
        self.calls["fanout_states"] += 1
        answers = self.unhidden_answers
        unhidden = answers[0] if len(answers) == 1 else answers.pop(0)
        return {
            i: AuthorState(high_follower_since=self.marked.get(i), may_hide=i not in unhidden) for i in ids
        }

    def high_followers_among(self, ids: Iterable[str]) -> dict[str, int]:
        self.calls["high_followers_among"] += 1
        return {i: self.marked[i] for i in ids if i in self.marked}

    def inactive_among(self, ids: Iterable[str], seen_before_ms: int) -> set[str]:
        self.calls["inactive_among"] += 1
        return set(ids) & self.away

    def finish_feed_rebuild(self, user_id: str, started_ms: int) -> None:
        self.finished.append((user_id, started_ms))

    # follows
    def following_since(self, follower: str, limit: int, after: str | None = None) -> list[tuple[str, int]]:
        return [f for f in self.following.get(follower, []) if after is None or f[0] > after][:limit]

    def followers_pages(
        self, pages: Sequence[tuple[str, str | None]], limit: int
    ) -> dict[tuple[str, str | None], list[tuple[str, int]]]:
        self.calls["followers_pages"] += 1
        self.calls["follower_queries"] += len(set(pages))
        return {
            (a, after): [f for f in self.followers.get(a, []) if after is None or f[0] > after][:limit]
            for a, after in pages
        }

    # feed
    def put_many(self, entries: Iterable[FeedEntry]) -> int:
        self.calls["put_many"] += 1
        rows = {(e.user_id, e.post_id) for e in entries}
        self.feed |= rows
        return len(rows)

    def delete_many(self, keys: Iterable[tuple[str, str]]) -> int:
        self.calls["delete_many"] += 1
        gone = set(keys) & self.feed
        self.feed -= gone
        return len(gone)

    # posts
    def existing(self, keys: Iterable[tuple[str, str]]) -> set[str]:
        self.calls["existing"] += 1
        return {p for _, p in keys if p in self.posts}

    def reposted(self, keys: Iterable[tuple[str, str]]) -> set[str]:
        self.calls["reposted"] += 1
        return set()

    def repost_counts(self, keys: Iterable[tuple[str, str]]) -> dict[str, int]:
        """The posts that exist (none reposted): one consistent BatchGetItem, as ``existing``."""
        self.calls["existing"] += 1
        return {p: 0 for _, p in keys if p in self.posts}

    def recent_by_authors(self, wanted: Sequence[tuple[str, str | None]], limit: int) -> list[list[Post]]:
        self.calls["recent_by_authors"] += 1
        return [
            [p for p in self.authored.get(a, []) if before is None or p.post_id < before][:limit]
            for a, before in wanted
        ]

    # jobs
    def enqueue(self, job: FanoutJob) -> bool:
        self.jobs.append(job)
        return True

    def enqueue_many(self, jobs: Sequence[FanoutJob]) -> int:
        self.calls["enqueue_many"] += 1
        self.jobs.extend(jobs)
        return len(jobs)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def service(f: Fakes) -> FanoutService:
    any_f: Any = f
    return FanoutService(
        any_f, any_f, any_f, any_f, any_f, any_f, any_f, any_f,
        backfill_posts=2, page_size=PAGE, high_follower_threshold=100, pull_grace_ms=GRACE_MS,
    )  # fmt: skip


def post_change(author: str, post_id: str, created_at: int, event: str = INSERT) -> StreamChange:
    image = {"author_id": author, "post_id": post_id, "created_at": created_at, "text": "t"}
    return StreamChange(
        "posts", event, "1", image if event == INSERT else {}, image if event != INSERT else {}
    )


def test_a_batch_of_posts_by_many_authors_costs_one_call_of_each_kind(fakes: Fakes) -> None:
    # Given 4 authors with 2 followers each, and 3 posts by each in one batch
    for a in "abcd":
        fakes.followers[a] = [(f"{a}1", 0), (f"{a}2", 0)]
    changes = [post_change(a, f"{a}-p{i}", 10 + i) for a in "abcd" for i in range(3)]
    fakes.posts |= {str(c.image["post_id"]) for c in changes}
    batch = FanoutConsumer(service(fakes), None, "posts", "follows", "jobs").open_batch()
    for c in changes:
        batch.add(c)

    batch.commit()

    # Then every author and follower holds every post, in one call per kind (a Query per author)
    assert fakes.feed == {(r, f"{a}-p{i}") for a in "abcd" for r in (a, f"{a}1", f"{a}2") for i in range(3)}
    assert fakes.calls == Counter(
        fanout_states=1,  # the authors' accounts (each may be hidden: not read again after)
        followers_pages=1,
        follower_queries=4,
        put_many=1,
        existing=1,
        relations_of=2,  # the authors' blocks and mutes: before writing, and again after
    )


def test_authors_whom_no_block_or_mute_hides_cost_no_relation_reads(fakes: Fakes) -> None:
    # Given two authors, only one of whom a block or mute ever hid (UserModel.may_hide)
    for a in "ab":
        fakes.followers[a] = [(f"{a}1", 0), (f"{a}2", 0)]
        fakes.posts.add(f"{a}-p")
    fakes.unhidden_answers = [{"b"}]
    fakes.relation_answers = [{"a": Relations(muted_by=frozenset({"a1"}))}]
    read: list[list[str]] = []
    relations_of = fakes.relations_of
    fakes.relations_of = lambda ids: relations_of(read.append(list(ids)) or ids)  # type: ignore[method-assign]

    service(fakes).push_many([FanoutJob(PUSH, a, f"{a}-p", 10, after="") for a in "ab"])

    # Then only a's relations are read (before and after the write), and a's muter is skipped
    assert read == [["a"], ["a"]]
    assert fakes.feed == {("a", "a-p"), ("a2", "a-p"), ("b", "b-p"), ("b1", "b-p"), ("b2", "b-p")}


def test_a_block_committed_while_the_page_is_written_is_undone_for_an_author_none_hid_before(
    fakes: Fakes,
) -> None:
    # Given an author no block or mute hid when the page is read, and r1 blocking them by the
    # time the items are written (the block's transaction marks the author: may_hide)
    fakes.followers["a"] = [("r1", 0), ("r2", 0)]
    fakes.posts.add("p1")
    fakes.unhidden_answers = [{"a"}, set()]
    fakes.relation_answers = [{"a": Relations(blocked_by=frozenset({"r1"}))}]

    written = service(fakes).push_many([FanoutJob(PUSH, "a", "p1", 10, after="")])

    # Then the account, read again after the write, tells of the block, which its relations
    # then show: r1's item is deleted again
    assert fakes.feed == {("a", "p1"), ("r2", "p1")}
    assert written == 2 and fakes.calls["relations_of"] == 1 and fakes.calls["fanout_states"] == 2


def test_no_item_for_readers_who_block_or_mute_the_author_or_whom_the_author_blocks(fakes: Fakes) -> None:
    # Given an author with a page of followers (PAGE = 3): one mutes the author, one is
    # blocked by them (a race: the follow is not gone yet); and someone who blocks them
    fakes.followers["a"] = [("blocked", 0), ("muter", 0), ("r1", 0)]
    fakes.posts.add("p1")
    hidden = Relations(muted_by=frozenset({"muter"}), blocks=frozenset({"blocked"}))
    fakes.relation_answers = [{"a": hidden}]

    written = service(fakes).push_many([FanoutJob(PUSH, "a", "p1", 10, after="")])

    # Then only r1 (and the author) have the post
    assert fakes.feed == {("a", "p1"), ("r1", "p1")}
    assert written == 2


def test_a_block_committed_while_the_page_is_written_is_undone(fakes: Fakes) -> None:
    # Given no relation when the page is read, and r1 blocking the author by the time the
    # items are written (the block's own retraction may already have passed r1)
    fakes.followers["a"] = [("r1", 0), ("r2", 0)]
    fakes.posts.add("p1")
    fakes.relation_answers = [{}, {"a": Relations(blocked_by=frozenset({"r1"}))}]

    written = service(fakes).push_many([FanoutJob(PUSH, "a", "p1", 10, after="")])

    # Then r1's item is deleted again; r2's stays
    assert fakes.feed == {("a", "p1"), ("r2", "p1")}
    assert written == 2 and fakes.calls["delete_many"] == 1


def test_a_pulled_author_is_not_pushed_after_the_grace_and_a_full_page_continues(fakes: Fakes) -> None:
    fakes.marked["big"] = 0
    fakes.followers["big"] = [("r1", 0)]
    fakes.followers["small"] = [(f"r{i}", 0) for i in range(PAGE + 1)]
    fakes.posts |= {"early", "late", "s1"}
    fanout = service(fakes)
    pushes = [
        FanoutJob(PUSH, "big", "early", GRACE_MS - 1, after=""),  # within the grace: still pushed
        FanoutJob(PUSH, "big", "late", GRACE_MS, after=""),
        FanoutJob(PUSH, "small", "s1", 5, after=""),
    ]

    fanout.push_many(pushes)

    assert (
        ("r1", "early") in fakes.feed and ("r1", "late") not in fakes.feed and ("big", "late") in fakes.feed
    )
    assert [(j.post_id, j.after) for j in fakes.jobs] == [("s1", f"r{PAGE - 1}")]


def test_a_post_deleted_during_its_push_is_undone_and_not_continued(fakes: Fakes) -> None:
    fakes.followers["a"] = [(f"r{i}", 0) for i in range(PAGE)]
    fakes.posts |= {"kept"}  # "gone" was deleted while the batch ran
    service(fakes).push_many(
        [FanoutJob(PUSH, "a", "gone", 5, after=""), FanoutJob(PUSH, "a", "kept", 6, after="")]
    )
    assert {p for _, p in fakes.feed} == {"kept"}
    assert [j.post_id for j in fakes.jobs] == ["kept"]


class RecordingFanout(FanoutService):
    """Records the order of pushes and deletions instead of doing them."""

    def __init__(self, fakes: Fakes) -> None:
        any_f: Any = fakes
        super().__init__(
            any_f, any_f, any_f, any_f, any_f, any_f, any_f, any_f,
            backfill_posts=2, page_size=PAGE, high_follower_threshold=100, pull_grace_ms=GRACE_MS,
        )  # fmt: skip
        self.order: list[str] = []

    def push_many(self, pushes: Sequence[FanoutJob]) -> int:
        self.order.append("push " + ",".join(p.post_id for p in pushes))
        return 0

    def post_deleted(self, author_id: str, post_id: str) -> int:
        self.order.append(f"delete {post_id}")
        return 0


def test_pushes_are_not_grouped_across_another_change(fakes: Fakes) -> None:
    # Given post, post, delete of the first, post: the delete runs between the pushes
    fanout = RecordingFanout(fakes)
    batch = FanoutConsumer(fanout, None, "posts", "follows", "jobs").open_batch()
    changes = [post_change("a", "p1", 1), post_change("b", "p2", 1)]
    changes += [post_change("a", "p1", 1, REMOVE), post_change("a", "p3", 2)]
    for change in changes:
        batch.add(change)
    batch.commit()
    assert fanout.order == ["push p1,p2", "delete p1", "push p3"]


def test_a_failing_group_reports_how_many_changes_were_applied(fakes: Fakes) -> None:
    fakes.posts |= {"p1"}
    fanout = service(fakes)

    def failing(a: str, p: str) -> int:
        raise RuntimeError("injected")

    fanout.post_deleted = failing
    batch: FanoutBatch = FanoutConsumer(fanout, None, "posts", "follows", "jobs").open_batch()
    for change in (post_change("a", "p1", 1), post_change("a", "p0", 0, REMOVE), post_change("a", "p2", 2)):
        batch.add(change)
    with pytest.raises(PartialCommit) as failed:
        batch.commit()
    assert failed.value.applied == 1 and isinstance(failed.value.__cause__, RuntimeError)


def test_readers_away_get_no_items_and_the_rest_do(fakes: Fakes) -> None:
    fakes.followers["a"] = [("here", 0), ("gone", 0)]
    fakes.away = {"gone"}
    fakes.posts |= {"p"}
    fanout = service(fakes)
    fanout._inactive_after_ms = 30 * 86_400_000
    fanout.push_many([FanoutJob(PUSH, "a", "p", 5, after="")])
    assert fakes.feed == {("a", "p"), ("here", "p")}
    assert fakes.calls["inactive_among"] == 1


def test_a_rebuild_copies_each_followees_backfill_from_before_it_started_page_by_page(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reader following 3 accounts (one pulled), rebuilt 2 followees per page
    monkeypatch.setattr(FanoutService, "REBUILD_PAGE", 2)
    started = 1_800_000_000_000
    fakes.following["r"] = [("f1", 0), ("f2", started + 5_000), ("f3", 0)]
    fakes.marked["f3"] = 0  # pulled at read time: nothing copied
    for author in ("f1", "f2", "f3"):
        made = [started - 3_000, started - 2_000, started - 1_000, started + 10_000]
        fakes.authored[author] = [Post(new_ulid(t), author, "t", t) for t in reversed(made)]
    fanout = service(fakes)  # backfill_posts = 2

    job = FanoutJob(REBUILD, "r", "", started, after="")
    fanout.run_job(job)
    fanout.run_job(fakes.jobs[-1])

    # Then f1: its 2 newest before the start; f2, followed after the start: its 2 newest
    # before the follow (what the follow's backfill copied); f3 nothing; and it finished
    def before(author: str, floor_ms: int) -> set[tuple[str, str]]:
        return {("r", p.post_id) for p in fakes.authored[author] if p.post_id < ulid_floor(floor_ms)}

    newest_two = {a: sorted(before(a, started + (5_000 if a == "f2" else 0)))[-2:] for a in ("f1", "f2")}
    assert fakes.feed == set(newest_two["f1"]) | set(newest_two["f2"])
    assert [(j.kind, j.after) for j in fakes.jobs] == [(REBUILD, "f2")]
    assert fakes.finished == [("r", started)]
