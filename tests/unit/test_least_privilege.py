"""Least privilege: each function's ``Policies:`` in template.yaml grant exactly the tables,
indexes, queues and secrets its code path touches, and write or delete only where it does.

``NEEDS`` below is the truth, read from the code (the repositories each function's container
path reaches; the source is named beside each line). The integration suite checks it against
reality: tests/integration/test_hardening.py records every DynamoDB request the API and the
fan-out function make (through ``ripple_local.fault_proxy``) and asserts each one is allowed
here; tests/integration/test_sam_artifacts.py checks the policy-template table below against
SAM's own definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ripple_local.cfn import load_template
from ripple_local.functions import function_names

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]

# The actions of the SAM policy templates this template uses (samtranslator's
# policy_templates.json; tests/integration/test_sam_artifacts.py keeps the two identical).
# Each DynamoDB template grants on the table and on ``table/index/*``.
SAM_POLICY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "DynamoDBCrudPolicy": (
        "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:Query",
        "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:DescribeTable",
        "dynamodb:ConditionCheckItem",
    ),
    "DynamoDBReadPolicy": (
        "dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem",
        "dynamodb:DescribeTable",
    ),
    "DynamoDBWritePolicy": ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"),
    "SQSSendMessagePolicy": ("sqs:SendMessage*",),
    "AWSSecretsManagerGetSecretValuePolicy": ("secretsmanager:GetSecretValue",),
}  # fmt: skip
_TEMPLATE_PARAMETER = {
    "DynamoDBCrudPolicy": "TableName",
    "DynamoDBReadPolicy": "TableName",
    "DynamoDBWritePolicy": "TableName",
    "SQSSendMessagePolicy": "QueueName",
    "AWSSecretsManagerGetSecretValuePolicy": "SecretArn",
}

# What each kind of DynamoDB action lets a function do to a table.
READ = frozenset(
    {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:DescribeTable"}
    | {"dynamodb:ConditionCheckItem"}
)
WRITE = frozenset({"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"})
DELETE = frozenset({"dynamodb:DeleteItem"})

# (logical id of the table, actions the code performs on it, and on which index).
# A table's index is addressed as "Table/index/name".
NEEDS: dict[str, dict[str, frozenset[str]]] = {
    "ApiFunction": {
        # repositories/users.py: create (transaction Put), get/get_many/exists, update_profile,
        # counters inside follow/post transactions (Update); services/feed.py PulledAuthors
        # (Query of the by_high_follower index).
        # DELETE /me deletes the row (repositories/users.py delete, a transaction); a like
        # checks its liker exists (repositories/likes.py, a ConditionCheck in its
        # transaction); a block updates both accounts and a mute its target (may_hide, in
        # repositories/blocks.py's transactions).
        "UsersTable": frozenset(
            {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
            | {"dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"}
        ),
        "UsersTable/index/by_high_follower": frozenset({"dynamodb:Query"}),
        # repositories/users.py: the username claim (transaction Put), id_by_username (Get),
        # released by delete (Update in its transaction).
        "UsernamesTable": frozenset({"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}),
        # repositories/posts.py: create/delete (transactions), get_by_key, get_many,
        # recent_by_author; repositories/likes.py moves like_count (Update in a transaction).
        "PostsTable": frozenset(
            {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem"}
            | {"dynamodb:UpdateItem", "dynamodb:DeleteItem"}
        ),
        # repositories/posts.py: the post id -> author row, written and deleted in the post's
        # transactions, read by author_of (Get).
        # repositories/reposts.py: a repost requires the id row (ConditionCheck).
        "PostIdsTable": frozenset(
            {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"}
        ),
        # repositories/follows.py: follow/unfollow (transaction Put/Delete), following (Query),
        # followed_among (BatchGet); repositories/blocks.py: a block reads the edges between
        # the two (BatchGet), deletes them or checks them absent (ConditionCheck).
        "FollowsTable": frozenset(
            {"dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"}
            | {"dynamodb:ConditionCheckItem"}
        ),
        # repositories/follows.py: the inverse edges (transaction Put/Delete), followers (Query).
        "FollowersTable": frozenset({"dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"}),
        # repositories/feed.py: page (Query); repositories/posts.py writes the author's own item
        # in the post's transaction (Put); services/health.py: ready (DescribeTable), deep (a
        # probe item put and deleted, BatchWriteItem).
        # repositories/feed.py page: items at their posts (Query of the table) and those
        # reposts placed (Query of the index); services/feed.py: a pulled post's item in the
        # reader's feed (BatchGet: placed by a repost?); services/reposts.py: the reposter's
        # own placement (conditional Update).
        "FeedTable": frozenset(
            {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:DescribeTable"}
            | {"dynamodb:BatchGetItem", "dynamodb:UpdateItem"}
        ),
        "FeedTable/index/by_placement": frozenset({"dynamodb:Query"}),
        # repositories/reposts.py: repost/unrepost (transaction Put/Delete), row and inverse;
        # services/reposts.py reads the repost again after the reposter's own placement (Get).
        "RepostsTable": frozenset({"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:GetItem"}),
        "RepostsByUserTable": frozenset({"dynamodb:PutItem", "dynamodb:DeleteItem"}),
        # repositories/likes.py: like/unlike (transaction Put/Delete), liked (BatchGet).
        "LikesTable": frozenset({"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"}),
        # repositories/likes.py: the like's inverse row, in like/unlike's transactions.
        "LikesByUserTable": frozenset({"dynamodb:PutItem", "dynamodb:DeleteItem"}),
        # repositories/refresh_tokens.py: start a session (Put), rotate its live token
        # (conditional Update), end it on logout or replay (conditional Delete). Never read.
        "RefreshTokensTable": frozenset({"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}),
        # services/activity.py: a returning reader's feed rebuild (repositories/fanout_jobs.py
        # enqueue, a conditional Put); repositories/blocks.py: a mute's or unmute's job, and
        # DELETE /me's erasure job (a Put in their transactions).
        "FanoutJobsTable": frozenset({"dynamodb:PutItem"}),
        # repositories/blocks.py: block/unblock/mute/unmute (transaction Put/Delete), listing
        # and relations (Query); follows.py and likes.py check no block exists (ConditionCheck).
        "BlocksTable": frozenset(
            {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"}
        ),
        # repositories/blocks.py: the inverse rows (transaction Put/Delete), relations (Query).
        "BlockedByTable": frozenset({"dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"}),
        # repositories/notifications.py: page (Query of the by_activity index), last_read_at
        # (Get), unread_count (COUNT Query of the index), mark_read (conditional Update).
        "NotificationsTable": frozenset({"dynamodb:GetItem", "dynamodb:UpdateItem"}),
        "NotificationsTable/index/by_activity": frozenset({"dynamodb:Query"}),
        # container.py: the JWT signing key.
        "JwtSecret": frozenset({"secretsmanager:GetSecretValue"}),
    },
    "FanoutFunction": {
        # services/fanout.py: push_many re-checks a batch's posts (BatchGet); follow_added
        # backfills and a rebuild copies (Query).
        # services/erasure.py: a deleted account's posts (repositories/posts.py erase,
        # BatchWriteItem) and the like counts of its likes (likes.py erase, Update in a transaction).
        "PostsTable": frozenset(
            {"dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem"}
        ),
        # ... and their id rows; posts.py author_of (Get): a like row from before author_id
        # names no recipient (services/notifications.py).
        "PostIdsTable": frozenset({"dynamodb:BatchWriteItem", "dynamodb:GetItem"}),
        # repositories/follows.py followed_at (the table): follow_removed keeps what a newer
        # re-follow owns; followers / followers_since (the Followers table), a page at a time;
        # sever (transaction Deletes): an erased account's follows, both ways.
        # services/placement.py reads which reposters a reader follows, and since when (BatchGet).
        "FollowsTable": frozenset({"dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:BatchGetItem"}),
        "FollowersTable": frozenset({"dynamodb:Query", "dynamodb:DeleteItem"}),
        # repositories/users.py follower_count, is_high_follower (Get), high_followers_among
        # and inactive_among (BatchGet), mark_high_follower and finish_feed_rebuild (Update).
        "UsersTable": frozenset({"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"}),
        # repositories/feed.py put_many/delete_many (BatchWriteItem), entries_involving
        # (Query), get_many (BatchGet), place (conditional Update), replace_placement
        # (conditional Update or Delete); services/erasure.py reads an erased account's feed
        # in pages (the by_placement index).
        "FeedTable": frozenset(
            {"dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"}
            | {"dynamodb:DeleteItem"}
        ),
        "FeedTable/index/by_placement": frozenset({"dynamodb:Query"}),
        # repositories/reposts.py: get, of_post, reposters, has_reposts (Get, Query) to place
        # and settle; delete_reposts (BatchWriteItem): a deleted post's purge; erase
        # (transaction Deletes): an erased account's reposts; by_user (the inverse, Query).
        "RepostsTable": frozenset(
            {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"}
        ),
        "RepostsByUserTable": frozenset({"dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"}),
        # repositories/fanout_jobs.py enqueue (conditional Put) and enqueue_many (a batch's
        # push continuations, BatchWriteItem).
        "FanoutJobsTable": frozenset({"dynamodb:PutItem", "dynamodb:BatchWriteItem"}),
        # repositories/likes.py likers (Query) and delete_likes (BatchWriteItem): a deleted
        # post's likes, purged by services/fanout.py post_deleted / run_job.
        # likes.py erase (transaction Delete): an erased account's likes.
        "LikesTable": frozenset({"dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"}),
        # likes.py delete_likes (BatchWriteItem), liked_by (Query), erase (transaction Delete).
        "LikesByUserTable": frozenset({"dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"}),
        # refresh_tokens.py revoke: an erased account's tokens, by the by_user index.
        "RefreshTokensTable": frozenset({"dynamodb:BatchWriteItem"}),
        "RefreshTokensTable/index/by_user": frozenset({"dynamodb:Query"}),
        # repositories/blocks.py relations (two Queries: whom an author blocks, who blocks or
        # mutes them) and holds (Query): push_many, follow_added, mute and unmute jobs;
        # erase_user (BatchWriteItem): an erased account's blocks and mutes, both ways.
        "BlocksTable": frozenset({"dynamodb:Query", "dynamodb:BatchWriteItem"}),
        "BlockedByTable": frozenset({"dynamodb:Query", "dynamodb:BatchWriteItem"}),
        # repositories/notifications.py add/remove (transaction Put/Delete + Update), refresh
        # (Get, Query of the members, conditional Update); erase_user (BatchWriteItem): an
        # erased account's notifications.
        "NotificationsTable": frozenset(
            {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}
            | {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
        ),
        # The OnFailure destination of its five stream events.
        "StreamFailureQueue": frozenset({"sqs:SendMessage"}),
    },
    "CacheRefresherFunction": {
        # services/cache_refresh.py works from the stream images and writes Redis only.
        "StreamFailureQueue": frozenset({"sqs:SendMessage"}),
    },
}


@dataclass(frozen=True)
class Grant:
    """One Allow: an action on a resource named by logical id (``Table``, ``Table/index/*``)."""

    action: str
    resource: str


def _logical_id(reference: Any) -> str:
    """``!Ref X``, ``!GetAtt X.Arn``/``X.QueueName`` -> ``X``; ``!Sub "${X.Arn}/index/name"``
    (one index of a table) -> ``X/index/name``."""
    if isinstance(reference, dict):
        sub = reference.get("Fn::Sub")
        if isinstance(sub, str) and sub.startswith("${") and ".Arn}/index/" in sub:
            table, index = sub[2:].split(".Arn}/index/")
            return f"{table}/index/{index}"
        if "Ref" in reference:
            return str(reference["Ref"])
        if "Fn::GetAtt" in reference:
            target = reference["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    raise AssertionError(f"a policy names a resource by something other than Ref/GetAtt: {reference!r}")


def _template_grants(name: str, arguments: Mapping[str, Any]) -> set[Grant]:
    if name not in SAM_POLICY_TEMPLATES:
        raise AssertionError(f"policy template {name} is not in SAM_POLICY_TEMPLATES; add its actions")
    target = _logical_id(arguments[_TEMPLATE_PARAMETER[name]])
    resources = [target, f"{target}/index/*"] if name.startswith("DynamoDB") else [target]
    return {Grant(action, resource) for action in SAM_POLICY_TEMPLATES[name] for resource in resources}


def _statement_grants(statements: Iterable[Mapping[str, Any]]) -> set[Grant]:
    grants: set[Grant] = set()
    for statement in statements:
        assert statement.get("Effect") == "Allow", statement
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for resource in resources:
            assert resource != "*", f"wildcard resource in {statement}"
            grants |= {Grant(str(action), _logical_id(resource)) for action in actions}
    return grants


def granted(template: Mapping[str, Any], function_id: str) -> set[Grant]:
    """Everything the function's ``Policies:`` allow (SAM templates expanded)."""
    policies = template["Resources"][function_id]["Properties"].get("Policies") or []
    assert isinstance(policies, list), f"{function_id}: Policies must be a list"
    grants: set[Grant] = set()
    for policy in policies:
        assert isinstance(policy, dict) and len(policy) == 1, f"{function_id}: unexpected policy {policy!r}"
        ((name, body),) = policy.items()
        if name == "Statement":
            grants |= _statement_grants(body)
        else:
            grants |= _template_grants(name, body)
    return grants


def allows(grants: Iterable[Grant], action: str, resource: str) -> bool:
    """Would these grants allow ``action`` on ``resource`` (``Table`` or ``Table/index/name``)?"""
    for grant in grants:
        action_ok = grant.action == action or (
            grant.action.endswith("*") and action.startswith(grant.action[:-1])
        )
        resource_ok = grant.resource == resource or (
            grant.resource.endswith("/index/*") and resource.startswith(grant.resource[:-1])
        )
        if action_ok and resource_ok:
            return True
    return False


def _base(resource: str) -> str:
    return resource.split("/", 1)[0]


def _classes(actions: Iterable[str]) -> set[str]:
    """read / write / delete (DynamoDB), send (SQS), read (a secret)."""
    kinds = set()
    for action in actions:
        if action in READ or action == "secretsmanager:GetSecretValue":
            kinds.add("read")
        elif action.startswith("sqs:SendMessage"):
            kinds.add("send")
        elif action in WRITE:
            kinds.add("write")
        elif action in DELETE:
            kinds.add("delete")
        else:
            kinds.add(action)
    return kinds


FUNCTIONS = function_names(TEMPLATE)


def test_needs_cover_every_function_of_the_template() -> None:
    assert set(NEEDS) == set(FUNCTIONS)


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_every_needed_permission_is_granted(function_id: str) -> None:
    grants = granted(TEMPLATE, function_id)
    missing = [
        (action, resource)
        for resource, actions in NEEDS[function_id].items()
        for action in actions
        if not allows(grants, action, resource)
    ]
    assert not missing, f"{function_id} cannot do what its code does: {missing}"


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_no_resource_beyond_what_the_code_touches(function_id: str) -> None:
    touched = {_base(resource) for resource in NEEDS[function_id]}
    reachable = {_base(grant.resource) for grant in granted(TEMPLATE, function_id)}
    assert reachable == touched, f"{function_id} may reach {sorted(reachable - touched)} it never uses"


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_writes_and_deletes_only_where_the_code_does(function_id: str) -> None:
    """Per table: a function that only reads gets no write, one that never deletes no DeleteItem
    (the SAM templates may add more actions of a kind already needed, e.g. Scan with Query)."""
    needs_by_table: dict[str, set[str]] = {}
    for resource, actions in NEEDS[function_id].items():
        needs_by_table.setdefault(_base(resource), set()).update(actions)
    grants_by_table: dict[str, set[str]] = {}
    for grant in granted(TEMPLATE, function_id):
        grants_by_table.setdefault(_base(grant.resource), set()).add(grant.action)
    for table, needed in needs_by_table.items():
        kinds_granted = _classes(grants_by_table.get(table, set()))
        assert kinds_granted == _classes(needed), (function_id, table, sorted(kinds_granted))


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_no_wildcard_actions(function_id: str) -> None:
    for grant in granted(TEMPLATE, function_id):
        _, _, name = grant.action.partition(":")
        assert name and name != "*", grant
        assert grant.action == "sqs:SendMessage*" or "*" not in grant.action, grant


def test_stream_consumers_may_park_poison_records_on_their_failure_queue() -> None:
    for function_id in FUNCTIONS:
        events = RESOURCES[function_id]["Properties"].get("Events") or {}
        destinations = {
            _logical_id(event["Properties"]["DestinationConfig"]["OnFailure"]["Destination"])
            for event in events.values()
            if event["Type"] == "DynamoDB"
        }
        for queue in destinations:
            assert allows(granted(TEMPLATE, function_id), "sqs:SendMessage", queue), (function_id, queue)


def test_the_api_alone_reads_the_jwt_secret() -> None:
    readers = {
        function_id
        for function_id in FUNCTIONS
        if allows(granted(TEMPLATE, function_id), "secretsmanager:GetSecretValue", "JwtSecret")
    }
    assert readers == {"ApiFunction"}
