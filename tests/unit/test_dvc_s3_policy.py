"""The DVC remote's bucket policy, from the people's dvc levels (pure logic; the policy is
tried against a real store in tests/images/test_dvc_s3.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from mlops_kit_auth.dvc_s3 import (
    converge_bucket_policy,
    dvc_bucket_policy,
    people_bucket_policy,
    user_arn,
)
from mlops_kit_auth.roles import DVC_LEVELS, Account, PeopleError
from mlopskit import people

ALICE, BOB, CAROL = (user_arn(name) for name in ("alice", "bob", "carol"))


def statements(policy: dict) -> dict[str, dict]:
    return {statement["Sid"]: statement for statement in policy["Statement"]}


def test_levels_become_statements_confined_to_the_prefix() -> None:
    policy = statements(
        dvc_bucket_policy("team", "/dvc/", {ALICE: "write", BOB: "read", CAROL: "none"})
    )
    assert policy["DvcRead"]["Principal"] == {"AWS": [ALICE, BOB]}
    assert policy["DvcRead"]["Resource"] == ["arn:aws:s3:::team/dvc", "arn:aws:s3:::team/dvc/*"]
    assert policy["DvcList"]["Resource"] == ["arn:aws:s3:::team"]
    assert policy["DvcWrite"]["Resource"] == ["arn:aws:s3:::team/dvc/*"]
    assert policy["DvcWrite"]["Principal"] == {"AWS": [ALICE]}
    assert "s3:PutObject" in policy["DvcWrite"]["Action"]
    everyone = {p for s in policy.values() for p in s["Principal"]["AWS"]}
    assert CAROL not in everyone


def test_readers_only_get_no_write_statement_and_nobody_gets_none() -> None:
    assert set(statements(dvc_bucket_policy("team", "dvc", {BOB: "read"}))) == {
        "DvcList",
        "DvcRead",
    }
    assert dvc_bucket_policy("team", "dvc", {CAROL: "none"})["Statement"] == []


def test_rgw_user_principals() -> None:
    assert user_arn("alice") == "arn:aws:iam:::user/alice"
    assert user_arn("alice", "team") == "arn:aws:iam::team:user/alice"


@pytest.mark.parametrize(
    ("bucket", "prefix", "levels", "message"),
    [
        ("team", "", {}, "needs a bucket and a prefix"),
        ("", "dvc", {}, "needs a bucket and a prefix"),
        ("team", "dvc", {ALICE: "admin"}, "dvc level 'admin' of arn:aws:iam:::user/alice"),
    ],
)
def test_bad_input_names_the_problem(bucket: str, prefix: str, levels, message: str) -> None:
    with pytest.raises(PeopleError, match=message):
        dvc_bucket_policy(bucket, prefix, levels)


def test_the_tooling_and_the_image_know_the_same_dvc_levels() -> None:
    assert people.DVC_LEVELS == DVC_LEVELS


def test_people_become_principals_of_their_own_s3_users_in_the_tenant() -> None:
    team = [Account("alice", "editor", "x" * 20, "write"), Account("bob", "reader", "x" * 20)]
    policy = statements(people_bucket_policy("data", "dvc", team, account="lab"))
    assert policy["DvcWrite"]["Principal"] == {"AWS": ["arn:aws:iam::lab:user/alice"]}
    assert "arn:aws:iam::lab:user/bob" not in str(policy), "bob's dvc is none"


class ClientError(Exception):
    """botocore's ClientError, as far as converge_bucket_policy reads it."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class RecordingS3:
    """Records the calls a boto3 S3 client would get (pure logic; RGW runs it for real);
    deleting a policy answers ``delete_error`` when given."""

    exceptions = SimpleNamespace(ClientError=ClientError)

    def __init__(self, delete_error: str = "") -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.delete_error = delete_error

    def put_bucket_policy(self, **kwargs: Any) -> None:
        self.calls.append(("put", kwargs))

    def delete_bucket_policy(self, **kwargs: Any) -> None:
        self.calls.append(("delete", kwargs))
        if self.delete_error:
            raise ClientError(self.delete_error)


def test_converging_puts_the_policy_or_deletes_an_empty_one() -> None:
    client = RecordingS3()
    policy = dvc_bucket_policy("data", "dvc", {ALICE: "read"})
    converge_bucket_policy(client, "data", policy)
    converge_bucket_policy(client, "data", dvc_bucket_policy("data", "dvc", {ALICE: "none"}))
    assert client.calls[0][0] == "put"
    assert json.loads(client.calls[0][1]["Policy"]) == policy
    assert client.calls[1] == ("delete", {"Bucket": "data"})


def test_a_bucket_without_a_policy_is_what_nobody_wants_and_other_errors_stop() -> None:
    nobody = dvc_bucket_policy("data", "dvc", {ALICE: "none"})
    converge_bucket_policy(RecordingS3(delete_error="NoSuchBucketPolicy"), "data", nobody)
    with pytest.raises(ClientError, match="AccessDenied"):
        converge_bucket_policy(RecordingS3(delete_error="AccessDenied"), "data", nobody)
