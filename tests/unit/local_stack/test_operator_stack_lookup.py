"""The operator's commands find a local stack by its tables, on every page of ListTables
(an emulator holding several stacks has more than the 100 names one page carries)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ripple_local import commands
from ripple_local.aws import Endpoints
from ripple_local.operator_errors import OperatorError

ENDPOINTS = Endpoints.of("http://127.0.0.1:1", "http://127.0.0.1:1")


def stubbed(monkeypatch: pytest.MonkeyPatch, pages: list[list[str]]) -> Stubber:
    dynamodb = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(dynamodb)
    for number, names in enumerate(pages):
        response: dict[str, Any] = {"TableNames": names}
        if number + 1 < len(pages):
            response["LastEvaluatedTableName"] = names[-1]
        stubber.add_response("list_tables", response)
    stubber.activate()
    monkeypatch.setattr(commands, "client", lambda service, endpoints: dynamodb)
    return stubber


def test_a_stack_whose_tables_are_on_the_second_page_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    first = [f"other-{i:03d}-Table" for i in range(100)]
    stubber = stubbed(monkeypatch, [first, ["mine-UsersTable", "mine-PostsTable"]])
    commands._require_stack(ENDPOINTS, "mine")  # raises if only the first page was read
    stubber.assert_no_pending_responses()


def test_no_table_of_the_stack_on_any_page_is_an_operator_error(monkeypatch: pytest.MonkeyPatch) -> None:
    stubbed(monkeypatch, [[f"other-{i:03d}-Table" for i in range(100)], ["other-last-Table"]])
    with pytest.raises(OperatorError, match="no stack 'mine'"):
        commands._require_stack(ENDPOINTS, "mine")
