"""The DVC remote on a real S3 store (Ceph RGW): the stock `dvc` with each person's own keys,
confined by the bucket policy that mlopskit.s3_access makes from their dvc levels, attacked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mlops_kit_auth.dvc_s3 import dvc_bucket_policy, user_arn

from tests.support.docker import Sandbox
from tests.support.dvc import (
    clone_without_data,
    init_project,
    run_dvc,
    use_s3_remote,
    write_s3_credentials,
)
from tests.support.s3store import S3Store, start_s3store

pytestmark = pytest.mark.docker

BUCKET = "team-data"
PREFIX = "dvc"
ARTIFACTS = "team-artifacts"  # MLflow's, a bucket of its own (mlopskit.s3_access)
ARTIFACT = "1/run/artifacts/model.pkl"


@pytest.fixture(scope="module")
def store(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> S3Store:
    return start_s3store(sandbox, tmp_path_factory.mktemp("s3"))


@pytest.fixture(scope="module")
def keys(store: S3Store) -> dict[str, tuple[str, str]]:
    """The bucket's owner (the MLflow server's user) and one S3 user per person, with the
    policy of alice (write), bob (read) and carol (none) on the bucket."""
    people = {name: store.add_user(name) for name in ("owner", "alice", "bob", "carol")}
    owner = store.client(*people["owner"])
    owner.create_bucket(Bucket=BUCKET)
    owner.create_bucket(Bucket=ARTIFACTS)
    owner.put_object(Bucket=ARTIFACTS, Key=ARTIFACT, Body=b"artifact")
    owner.put_object(Bucket=BUCKET, Key="README", Body=b"outside the remote")
    levels = {user_arn("alice"): "write", user_arn("bob"): "read", user_arn("carol"): "none"}
    policy = dvc_bucket_policy(BUCKET, PREFIX, levels)
    owner.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    return people


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dvc(*args, cwd=cwd, timeout=300)


def use_keys(project: Path, store: S3Store, access: str, secret: str) -> None:
    """The person's own keys, outside the project, named in its git-ignored config.local."""
    keys = write_s3_credentials(project.parent / f"{project.name}-aws-credentials", access, secret)
    use_s3_remote(project, keys)


@pytest.fixture(scope="module")
def pushed(
    store: S3Store, keys: dict[str, tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """alice's project: data added and pushed with her keys; its git files are what a clone
    gets."""
    project = init_project(tmp_path_factory.mktemp("alice") / "project")
    credentials = write_s3_credentials(project.parent / "alice-credentials", *keys["alice"])
    use_s3_remote(project, credentials, f"s3://{BUCKET}/{PREFIX}", store.url)
    (project / "data.csv").write_text("x,y\n1,2\n" * 1000)
    assert run(project, "dvc", "add", "data.csv").returncode == 0
    result = run(project, "dvc", "push")
    assert result.returncode == 0, result.stderr
    return project


def clone(pushed: Path, where: Path) -> Path:
    return clone_without_data(pushed, where, "data.csv")


def test_a_reader_pulls_the_exact_data(
    pushed: Path, store: S3Store, keys: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    project = clone(pushed, tmp_path / "bob")
    use_keys(project, store, *keys["bob"])
    result = run(project, "dvc", "pull")
    assert result.returncode == 0, result.stderr
    assert (project / "data.csv").read_text() == (pushed / "data.csv").read_text()


def test_a_reader_cannot_push(
    pushed: Path, store: S3Store, keys: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    project = clone(pushed, tmp_path / "bob")
    use_keys(project, store, *keys["bob"])
    (project / "more.csv").write_text("new data\n")
    assert run(project, "dvc", "add", "more.csv").returncode == 0
    result = run(project, "dvc", "push")
    assert result.returncode != 0
    listed = store.client(*keys["owner"]).list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    assert len(listed["Contents"]) == 1, "only alice's object is in the remote"


def test_someone_without_dvc_access_cannot_pull(
    pushed: Path, store: S3Store, keys: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    project = clone(pushed, tmp_path / "carol")
    use_keys(project, store, *keys["carol"])
    assert run(project, "dvc", "pull").returncode != 0
    assert not (project / "data.csv").exists()


def test_a_writer_reaches_nothing_outside_the_prefix(
    store: S3Store, keys: dict[str, tuple[str, str]], pushed: Path
) -> None:
    alice = store.client(*keys["alice"])
    denied = alice.exceptions.ClientError
    with pytest.raises(denied, match="AccessDenied"):
        alice.get_object(Bucket=ARTIFACTS, Key=ARTIFACT)
    with pytest.raises(denied, match="AccessDenied"):
        alice.list_objects_v2(Bucket=ARTIFACTS)
    with pytest.raises(denied, match="AccessDenied"):
        alice.put_object(Bucket=ARTIFACTS, Key=ARTIFACT, Body=b"forged")
    with pytest.raises(denied, match="AccessDenied"):
        alice.put_object(Bucket=BUCKET, Key="README", Body=b"forged")
    with pytest.raises(denied, match="AccessDenied"):
        alice.delete_object(Bucket=BUCKET, Key="README")
    with pytest.raises(denied, match="AccessDenied"):
        alice.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Statement": []}))
    owner = store.client(*keys["owner"])
    assert owner.get_object(Bucket=ARTIFACTS, Key=ARTIFACT)["Body"].read() == b"artifact"
    assert owner.get_object(Bucket=BUCKET, Key="README")["Body"].read() == b"outside the remote"
    # The checks above can fail: inside the prefix, alice may write and delete.
    alice.put_object(Bucket=BUCKET, Key=f"{PREFIX}/probe", Body=b"ok")
    alice.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/probe")


def test_a_reader_cannot_write_or_delete_with_a_raw_client(
    store: S3Store, keys: dict[str, tuple[str, str]], pushed: Path
) -> None:
    bob = store.client(*keys["bob"])
    key = store.client(*keys["owner"]).list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")[
        "Contents"
    ][0]["Key"]
    with pytest.raises(bob.exceptions.ClientError, match="AccessDenied"):
        bob.put_object(Bucket=BUCKET, Key=f"{PREFIX}/forged", Body=b"x")
    with pytest.raises(bob.exceptions.ClientError, match="AccessDenied"):
        bob.delete_object(Bucket=BUCKET, Key=key)
    assert bob.get_object(Bucket=BUCKET, Key=key)["Body"].read()
