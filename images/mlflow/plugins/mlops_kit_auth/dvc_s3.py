"""Who may do what on the DVC remote of an S3-compatible store: a bucket policy from the people.

Each person has their own S3 user on the store, named as in people.yml (issued by the store's
admin; the kit never holds the people's S3 keys). Their `dvc` level becomes the policy of the
bucket that holds the remote, which the server (MLFLOW_DVC_S3_REMOTE) converges at start with
its own keys, as it converges the MLflow accounts. The same levels as on SFTP:
`read` may list and download, `write` may also upload and delete (under the remote's prefix
only), `none` gets nothing.

The remote needs a bucket of its own, apart from MLflow's artifacts: to whoever may not list
the whole bucket, S3 answers 403 instead of 404 for a key that does not exist, and DVC, which
looks up keys before it uploads them, takes that for an error. So readers may list the bucket.
The people reach MLflow's artifacts through MLflow only, in a bucket the server's user owns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .roles import DVC_LEVELS, Account, PeopleError

POLICY_VERSION = "2012-10-17"
READ_OBJECT_ACTIONS = ("s3:GetObject",)
WRITE_OBJECT_ACTIONS = (
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
WRITE_BUCKET_ACTIONS = ("s3:ListBucketMultipartUploads",)


def user_arn(user: str, tenant: str = "") -> str:
    """The principal of an S3 user of Ceph RGW (and of AWS IAM, with an account number)."""
    return f"arn:aws:iam::{tenant}:user/{user}"


def dvc_bucket_policy(bucket: str, prefix: str, levels: Mapping[str, str]) -> dict[str, Any]:
    """The bucket policy that gives each principal of ``levels`` (ARN → `read`, `write` or
    `none`) its level on the objects under ``prefix`` and nothing else. No statement at all
    (everyone `none`): delete the bucket's policy instead, S3 refuses an empty one."""
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise PeopleError(
            f"the DVC remote needs a bucket and a prefix (got {bucket!r} and {prefix!r}): the "
            "people may write under the prefix only"
        )
    for principal, level in levels.items():
        if level not in DVC_LEVELS:
            raise PeopleError(
                f"dvc level {level!r} of {principal} must be one of {', '.join(DVC_LEVELS)}"
            )
    readers = sorted(p for p, level in levels.items() if level in ("read", "write"))
    writers = sorted(p for p, level in levels.items() if level == "write")
    objects = f"arn:aws:s3:::{bucket}/{prefix}/*"
    statements: list[dict[str, Any]] = []
    if readers:
        statements += [
            {
                "Sid": "DvcList",
                "Effect": "Allow",
                "Principal": {"AWS": readers},
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Sid": "DvcRead",
                "Effect": "Allow",
                "Principal": {"AWS": readers},
                "Action": list(READ_OBJECT_ACTIONS),
                # DVC looks the remote's own path up as an object too (a HEAD), before its files.
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}", objects],
            },
        ]
    if writers:
        statements += [
            {
                "Sid": "DvcWrite",
                "Effect": "Allow",
                "Principal": {"AWS": writers},
                "Action": list(WRITE_OBJECT_ACTIONS),
                "Resource": [objects],
            },
            {
                "Sid": "DvcWriteUploads",
                "Effect": "Allow",
                "Principal": {"AWS": writers},
                "Action": list(WRITE_BUCKET_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
        ]
    return {"Version": POLICY_VERSION, "Statement": statements}


def people_bucket_policy(
    bucket: str, prefix: str, people: Iterable[Account], account: str = ""
) -> dict[str, Any]:
    """The policy of the people's S3 users (user names as in people.yml, in ``account``: the
    Ceph RGW tenant or AWS account; empty for RGW's default tenant)."""
    return dvc_bucket_policy(
        bucket, prefix, {user_arn(person.name, account): person.dvc for person in people}
    )


def converge_bucket_policy(client: Any, bucket: str, policy: Mapping[str, Any]) -> str:
    """Make ``policy`` the bucket's (a boto3 S3 client of the bucket's owner). A policy
    without statements removes the bucket's policy: S3 refuses an empty one, and no policy
    leaves the bucket to its owner alone. Returns what it did, for the log."""
    if policy["Statement"]:
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        return f"the policy of bucket {bucket} gives {len(policy['Statement'])} statement(s)"
    try:
        client.delete_bucket_policy(Bucket=bucket)
    except client.exceptions.ClientError as exc:
        # Some stores answer a bucket that has no policy so; that is the state wanted.
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
            raise
    return f"bucket {bucket} has no policy: nobody but its owner reaches the DVC remote"
