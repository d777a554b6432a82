"""The MLflow image with its artifacts on a real S3 store (Ceph's RADOS Gateway), hardened.

The stock client logs through the server (`mlflow-artifacts:/` URIs), so data scientists need
no S3 keys; the server's keys come from a mounted credentials file and show nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient
from mlopskit.versions import ImageSet

from tests.images.conftest import Mlflow, Postgres, server_env, tracking_credentials
from tests.support.docker import Sandbox, docker, new_secret, secret_dir
from tests.support.s3store import S3Store, start_s3store

pytestmark = pytest.mark.docker

BUCKET = "team-artifacts"
PREFIX = "mlflow"
CREDENTIALS = "/run/secrets/s3/credentials"


def assert_stops_at_the_check(result: subprocess.CompletedProcess[str], message: str) -> None:
    """The store is checked after the database is reached (one log line): exit 78, and the
    last line is the error naming the problem and the fix."""
    assert result.returncode == 78, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    assert message in last, last


def credentials_file(directory: Path, access: str, secret: str) -> Path:
    """An AWS shared credentials file, as both deploy targets mount it."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    path = directory / "credentials"
    path.write_text(f"[default]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n")
    path.chmod(0o644)
    return directory


@pytest.fixture(scope="module")
def s3(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> S3Store:
    return start_s3store(sandbox, tmp_path_factory.mktemp("s3"))


@pytest.fixture(scope="module")
def server_keys(s3: S3Store) -> tuple[str, str]:
    """The MLflow server's own S3 user, owner of the bucket."""
    keys = s3.add_user("mlflow-server")
    s3.client(*keys).create_bucket(Bucket=BUCKET)
    return keys


def s3_env(s3: S3Store, destination: str = f"s3://{BUCKET}/{PREFIX}") -> dict[str, str]:
    return {
        "MLFLOW_ARTIFACTS_DESTINATION": destination,
        "MLFLOW_S3_ENDPOINT_URL": s3.internal_url,
        "MLFLOW_S3_CREDENTIALS_FILE": CREDENTIALS,
    }


@pytest.fixture(scope="module")
def s3_server(
    sandbox: Sandbox,
    images: ImageSet,
    postgres: Postgres,
    s3: S3Store,
    server_keys: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Mlflow:
    tmp = tmp_path_factory.mktemp("mlflow-s3")
    values = {"db": postgres.secrets["app"], "admin": new_secret(), "flask": new_secret()}
    secrets = secret_dir(tmp / "secrets", values)
    container = sandbox.run(
        "mlflow-s3",
        images.ref("mlflow"),
        env={**server_env("db"), **s3_env(s3)},
        mounts=[
            f"{secrets}:/run/secrets/mlflow:ro",
            f"{credentials_file(tmp / 's3', *server_keys)}:/run/secrets/s3:ro",
        ],
        publish=[5000],
    )
    container.wait_healthy()
    return Mlflow(container, values)


@pytest.fixture(scope="module")
def client(s3_server: Mlflow) -> Iterator[MlflowClient]:
    with tracking_credentials(s3_server.url, *s3_server.auth):
        yield MlflowClient(s3_server.url)


@pytest.fixture(scope="module")
def logged_run(client: MlflowClient, tmp_path_factory: pytest.TempPathFactory) -> dict:
    # Over 8 MiB: the server stores it with a multipart upload (boto3's threshold).
    artifact = tmp_path_factory.mktemp("artifact") / "weights.bin"
    artifact.write_bytes(os.urandom(9 * 1024 * 1024))
    mlflow.set_experiment(f"s3-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(artifact))
        mlflow.log_text("hello", "notes/readme.txt")
    return {
        "run": run,
        "artifact": artifact,
        "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
    }


def test_artifacts_land_in_the_bucket_under_the_prefix_byte_for_byte(
    logged_run: dict, s3: S3Store, server_keys: tuple[str, str]
) -> None:
    info = logged_run["run"].info
    key = f"{PREFIX}/{info.experiment_id}/{info.run_id}/artifacts/weights.bin"
    body = s3.client(*server_keys).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == logged_run["sha256"]
    listed = s3.client(*server_keys).list_objects_v2(Bucket=BUCKET)["Contents"]
    assert all(item["Key"].startswith(f"{PREFIX}/") for item in listed)


def test_the_client_reads_them_back_with_no_s3_keys(
    client: MlflowClient, logged_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    run = logged_run["run"]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    local = client.download_artifacts(run.info.run_id, "weights.bin", str(tmp_path))
    assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == logged_run["sha256"]
    listed = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert listed == {"weights.bin", "notes"}


def test_the_server_hands_out_no_presigned_url_of_the_store(
    s3_server: Mlflow, logged_run: dict
) -> None:
    """Clients outside the server's network could not use one (the S3 endpoint's name is the
    server's): MLflow would hand them out for every download, and the client would hang."""
    info = requests.get(
        f"{s3_server.url}/api/3.0/mlflow/server-info", auth=s3_server.auth, timeout=10
    ).json()
    assert (info["multipart_downloads_enabled"], info["multipart_uploads_enabled"]) == (
        False,
        False,
    )
    run = logged_run["run"].info
    presigned = requests.get(
        f"{s3_server.url}/api/2.0/mlflow-artifacts/presigned/"
        f"{run.experiment_id}/{run.run_id}/artifacts/weights.bin",
        auth=s3_server.auth,
        timeout=10,
    )
    assert presigned.status_code == 501, presigned.text
    # A client that forces a multipart upload (MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=true) gets
    # no presigned upload URL of the store either.
    upload = requests.post(
        f"{s3_server.url}/api/2.0/mlflow-artifacts/mpu/create/"
        f"{run.experiment_id}/{run.run_id}/artifacts/big.bin",
        json={"path": "big.bin", "num_parts": 2},
        auth=s3_server.auth,
        timeout=10,
    )
    assert upload.status_code == 501, upload.text
    server_env = s3_server.container.exec("sh", "-c", "tr '\\0' '\\n' </proc/1/environ")
    assert "MLFLOW_PRESIGNED_ARTIFACT_URLS=false" in server_env.splitlines()


def test_artifacts_need_mlflow_credentials(s3_server: Mlflow, logged_run: dict) -> None:
    info = logged_run["run"].info
    url = (
        f"{s3_server.url}/api/2.0/mlflow-artifacts/artifacts/"
        f"{info.experiment_id}/{info.run_id}/artifacts/notes/readme.txt"
    )
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("admin", "wrong-password"), timeout=10).status_code == 401
    answer = requests.get(url, auth=s3_server.auth, timeout=10)
    assert (answer.status_code, answer.text) == (200, "hello")


def test_another_s3_user_cannot_read_the_bucket(
    s3: S3Store, logged_run: dict, server_keys: tuple[str, str]
) -> None:
    intruder = s3.client(*s3.add_user("intruder"))
    with pytest.raises(intruder.exceptions.ClientError, match="AccessDenied"):
        intruder.list_objects_v2(Bucket=BUCKET)


def test_the_s3_secret_key_shows_nowhere_but_in_its_file(
    s3_server: Mlflow, server_keys: tuple[str, str], logged_run: dict
) -> None:
    secret = server_keys[1]
    container = s3_server.container
    assert secret not in docker("inspect", container.name).stdout
    assert secret not in container.exec("ps", "auxww")
    environments = container.exec("sh", "-c", "cat /proc/[0-9]*/environ | tr '\\0' '\\n'")
    assert "AWS_SHARED_CREDENTIALS_FILE=" + CREDENTIALS in environments
    assert secret not in environments
    assert secret not in container.logs()
    # The checks above must be able to fail: the key is in the mounted file.
    assert secret in container.exec("cat", CREDENTIALS)


@pytest.fixture
def check_env(
    postgres: Postgres, s3: S3Store, server_keys: tuple[str, str], tmp_path: Path
) -> tuple[dict[str, str], list[str]]:
    """A server (auth off) on the shared database and the store, and its mounts, to break."""
    secrets = secret_dir(tmp_path / "secrets", {"db": postgres.secrets["app"]})
    env = {
        "MLFLOW_DB_HOST": "db",
        "MLFLOW_DB_PASSWORD_FILE": "/run/secrets/mlflow/db",
        "MLFLOW_AUTH_ENABLED": "false",
        "MLFLOW_DB_WAIT_SECONDS": "6",
        **s3_env(s3),
    }
    mounts = [
        f"{secrets}:/run/secrets/mlflow:ro",
        f"{credentials_file(tmp_path / 's3', *server_keys)}:/run/secrets/s3:ro",
    ]
    return env, mounts


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"MLFLOW_ARTIFACTS_DESTINATION": "s3://no-such-bucket/mlflow"},
            "the bucket no-such-bucket does not exist; create it",
        ),
        (
            {"MLFLOW_S3_ENDPOINT_URL": "http://nowhere.invalid:7480"},
            "did not answer within 6s",
        ),
        (
            {"MLFLOW_S3_CREDENTIALS_FILE": "/run/secrets/s3/missing"},
            "MLFLOW_S3_CREDENTIALS_FILE=/run/secrets/s3/missing is not readable; mount it",
        ),
    ],
)
def test_a_wrong_store_setting_stops_the_server_with_the_fix(
    sandbox: Sandbox,
    images: ImageSet,
    check_env: tuple[dict[str, str], list[str]],
    change: dict[str, str],
    message: str,
) -> None:
    env, mounts = check_env
    result = sandbox.run_to_exit(images.ref("mlflow"), env={**env, **change}, mounts=mounts)
    assert_stops_at_the_check(result, message)


def test_wrong_keys_stop_the_server_and_are_not_printed(
    sandbox: Sandbox,
    images: ImageSet,
    check_env: tuple[dict[str, str], list[str]],
    server_keys: tuple[str, str],
    tmp_path: Path,
) -> None:
    env, mounts = check_env
    wrong = new_secret()
    mounts[1] = f"{credentials_file(tmp_path / 'wrong', server_keys[0], wrong)}:/run/secrets/s3:ro"
    result = sandbox.run_to_exit(images.ref("mlflow"), env=env, mounts=mounts)
    assert_stops_at_the_check(
        result, "the server's S3 keys may not list it (SignatureDoesNotMatch)"
    )
    assert wrong not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("owner", "message"),
    [
        ("", "the bucket team-data does not exist; create it with the server's S3 user"),
        (
            "stranger",
            "the server's S3 user may not set the policy of bucket team-data (AccessDenied); "
            "create the bucket with that user, which must own it",
        ),
    ],
)
def test_a_dvc_remote_bucket_the_server_does_not_own_stops_it_with_the_fix(
    sandbox: Sandbox,
    images: ImageSet,
    postgres: Postgres,
    s3: S3Store,
    check_env: tuple[dict[str, str], list[str]],
    tmp_path: Path,
    owner: str,
    message: str,
) -> None:
    """MLFLOW_DVC_S3_REMOTE: the server sets the remote bucket's policy at start, so a bucket
    missing or owned by someone else stops it (exit 78) instead of leaving the people's
    levels unenforced."""
    bucket = f"team-data-{uuid.uuid4().hex[:8]}"
    if owner:
        s3.client(*s3.add_user(f"{owner}-{bucket}")).create_bucket(Bucket=bucket)
    env, mounts = check_env
    people = secret_dir(
        tmp_path / "people",
        {
            "people.json": '[{"name": "alice", "role": "editor", "dvc": "write"}]',
            "alice.password": new_secret(),
        },
    )
    auth = secret_dir(tmp_path / "auth", {"admin": new_secret(), "flask": new_secret()})
    env = {
        **env,
        **server_env("db"),
        "MLFLOW_AUTH_ENABLED": "true",
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": "/run/secrets/auth/admin",
        "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": "/run/secrets/auth/flask",
        "MLFLOW_PEOPLE_DIR": "/run/secrets/people",
        "MLFLOW_DVC_S3_REMOTE": f"s3://{bucket}/dvc",
    }
    mounts = [*mounts, f"{people}:/run/secrets/people:ro", f"{auth}:/run/secrets/auth:ro"]
    result = sandbox.run_to_exit(images.ref("mlflow"), env=env, mounts=mounts)
    assert_stops_at_the_check(result, message.replace("team-data", bucket))


def test_nobody_with_dvc_access_leaves_the_remote_bucket_without_a_policy(
    sandbox: Sandbox,
    images: ImageSet,
    postgres: Postgres,
    s3: S3Store,
    server_keys: tuple[str, str],
    tmp_path: Path,
) -> None:
    """Everyone's dvc level `none`: the server removes the bucket's policy (a bucket that has
    none already included) and serves; only the owner reaches the bucket."""
    bucket = f"team-data-{uuid.uuid4().hex[:8]}"
    owner = s3.client(*server_keys)
    owner.create_bucket(Bucket=bucket)
    owner.put_bucket_policy(
        Bucket=bucket, Policy=dvc_bucket_policy_json(bucket, {"arn:aws:iam:::user/left": "write"})
    )
    people = secret_dir(
        tmp_path / "people",
        {
            "people.json": '[{"name": "alice", "role": "editor", "dvc": "none"}]',
            "alice.password": new_secret(),
        },
    )
    values = {"db": postgres.secrets["app"], "admin": new_secret(), "flask": new_secret()}
    secrets = secret_dir(tmp_path / "secrets", values)
    mounts = [
        f"{secrets}:/run/secrets/mlflow:ro",
        f"{credentials_file(tmp_path / 's3', *server_keys)}:/run/secrets/s3:ro",
        f"{people}:/run/secrets/people:ro",
    ]
    env = {
        **server_env("db"),
        **s3_env(s3),
        "MLFLOW_PEOPLE_DIR": "/run/secrets/people",
        "MLFLOW_DVC_S3_REMOTE": f"s3://{bucket}/dvc",
    }
    for _ in range(2):  # the second start finds no policy to remove
        container = sandbox.run(
            f"mlflow-dvc-{uuid.uuid4().hex[:6]}", images.ref("mlflow"), env=env, mounts=mounts
        )
        container.wait_healthy()
        logs = docker("logs", container.name, check=False)
        assert f"bucket {bucket} has no policy" in logs.stdout + logs.stderr
        with pytest.raises(owner.exceptions.ClientError, match="NoSuchBucketPolicy"):
            owner.get_bucket_policy(Bucket=bucket)
        docker("rm", "-f", container.name)


def dvc_bucket_policy_json(bucket: str, levels: dict[str, str]) -> str:
    from mlops_kit_auth.dvc_s3 import dvc_bucket_policy

    return json.dumps(dvc_bucket_policy(bucket, "dvc", levels))
