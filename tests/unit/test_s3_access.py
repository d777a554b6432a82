"""The DVC remote's bucket policy, from the people's dvc levels (pure logic; the policy is
tried against a real store in tests/images/test_dvc_s3.py)."""

from __future__ import annotations

import pytest
from mlopskit.s3_access import dvc_bucket_policy, user_arn
from mlopskit.shell import CommandError

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
    with pytest.raises(CommandError, match=message):
        dvc_bucket_policy(bucket, prefix, levels)
