"""A data scientist's own key and login, used the way a hostile key holder would.

With the DVC remote on S3, their own S3 keys must reach the remote's prefix and nothing else,
and their SFTP key nothing at all (marker s3_remote; the SFTP checks are deselected).
With the key of build/<env>/people/<name>/ a session must reach the DVC area and nothing else:
no host key, no sshd configuration, no authorized_keys, no listing outside the area, no write
outside it, and (artifacts proxied) nothing of MLflow's artifact area. With the person's MLflow
login: no admin-only API. Stock OpenSSH `sftp` is used as well as paramiko.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest
import requests

from tests.smoke.smoke_support import connect_sftp

DVC_AREA = "/data/dvc"
SECRET_FILES = (
    "/tmp/sftp/sshd_config",
    "/tmp/sftp/home/.ssh/authorized_keys",
    "/tmp/sftp/host-keys/ssh_host_ecdsa_key",
    "/data/.host-keys/ssh_host_ecdsa_key",
    "/etc/sftp/host-keys/ssh_host_ecdsa_key",
    "/etc/sftp/access/mlflow",
    "/proc/1/environ",
)
PROTECTED_TARGETS = (
    "/tmp/sftp/home/.ssh/authorized_keys",
    "/tmp/sftp/sshd_config",
    "/data/artifacts/planted-by-a-person",
    "/data/planted-by-a-person",
)


@pytest.fixture(scope="module")
def session(client_env):
    client = connect_sftp(client_env)
    sftp = client.open_sftp()
    yield sftp
    sftp.close()
    client.close()


@pytest.fixture(scope="module")
def artifacts_proxied(mlflow, tracked) -> bool:
    """Proxied when the server hands out mlflow-artifacts:/ URIs (whatever the target)."""
    return mlflow.get_run(tracked["run_id"]).info.artifact_uri.startswith("mlflow-artifacts:")


@pytest.mark.sftp_login
def test_the_person_reaches_the_dvc_area(session):
    name = "isolation-probe"
    session.putfo(io.BytesIO(b"probe"), f"{DVC_AREA}/{name}")
    assert session.open(f"{DVC_AREA}/{name}").read() == b"probe"
    session.remove(f"{DVC_AREA}/{name}")


@pytest.mark.sftp_login
@pytest.mark.parametrize("path", SECRET_FILES)
def test_no_secret_file_can_be_read(session, path):
    with pytest.raises((PermissionError, FileNotFoundError)):
        session.open(path).read()


@pytest.mark.sftp_login
@pytest.mark.parametrize("directory", ["/", "/data", "/tmp/sftp", "/etc", "/etc/sftp"])
def test_nothing_outside_the_area_can_be_listed(session, directory):
    with pytest.raises(PermissionError):
        session.listdir(directory)


@pytest.mark.sftp_login
@pytest.mark.parametrize("target", PROTECTED_TARGETS)
def test_nothing_outside_the_area_can_be_written(session, target):
    with pytest.raises((PermissionError, FileNotFoundError)):
        session.putfo(io.BytesIO(b"ssh-ed25519 AAAA attacker\n"), target)


@pytest.mark.sftp_login
def test_mlflow_artifacts_are_out_of_reach_when_proxied(
    session, artifacts_proxied, tracked, artifacts_destination
):
    if not artifacts_proxied:
        # Direct mode hands people the artifact area on purpose (by their MLflow role).
        assert session.listdir("/data/artifacts") is not None
        return
    run_dir = f"/data/artifacts/{tracked['experiment_id']}/{tracked['run_id']}"
    attacks = [
        lambda: session.listdir("/data/artifacts"),
        lambda: session.mkdir("/data/artifacts/forged"),
    ]
    # The run's own files are on SFTP only with an sftp:// destination (else in the bucket).
    if artifacts_destination.startswith("sftp://"):
        attacks += [
            lambda: session.open(f"{run_dir}/artifacts/{tracked['artifact']}").read(1),
            lambda: session.remove(f"{run_dir}/artifacts/{tracked['artifact']}"),
        ]
    for attack in attacks:
        with pytest.raises(PermissionError):
            attack()


@pytest.mark.sftp_login
def test_stock_sftp_client_cannot_fetch_host_keys(client_env, tmp_path: Path):
    if shutil.which("sftp") is None:
        pytest.fail("the OpenSSH client (sftp) is missing: apt-get install openssh-client")
    stolen = tmp_path / "stolen"
    batch = "".join(f"-get {path} {stolen}\n" for path in SECRET_FILES[:4])
    argv = [
        "sftp", "-b", "-", "-P", client_env["SFTP_PORT"],
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={client_env['SFTP_KNOWN_HOSTS']}",
        "-o", "StrictHostKeyChecking=yes",
        "-i", client_env["SFTP_PRIVATE_KEY"],
        f"{client_env['SFTP_USERNAME']}@{client_env['SFTP_HOST']}",
    ]  # fmt: skip
    result = subprocess.run(
        argv,
        input=batch,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "Permission denied" in output, output
    assert not stolen.exists()


def test_the_person_is_no_admin(client_env):
    response = requests.post(
        client_env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/users/create",
        json={"username": "intruder", "password": "intruder-password-123"},
        auth=(client_env["MLFLOW_TRACKING_USERNAME"], client_env["MLFLOW_TRACKING_PASSWORD"]),
        timeout=30,
    )
    assert response.status_code == 403


def test_the_connection_file_holds_no_admin_secret(client_env, admin):
    assert client_env["MLFLOW_TRACKING_USERNAME"] != admin["MLFLOW_TRACKING_USERNAME"]
    assert admin["MLFLOW_TRACKING_PASSWORD"] not in client_env.values()


def test_a_stranger_key_is_refused(client_env):
    with pytest.raises(paramiko.AuthenticationException):
        connect_sftp(client_env, paramiko.RSAKey.generate(2048))


@pytest.mark.s3_remote
def test_the_persons_sftp_key_reaches_nothing(client_env):
    """Artifacts and data are on S3: the SFTP server lists no line for the person's key. (The
    key is loaded as what it is: paramiko, given a file, would try it as DSS too.)"""
    key = paramiko.PKey.from_path(client_env["SFTP_PRIVATE_KEY"])
    with pytest.raises(paramiko.AuthenticationException):
        connect_sftp(client_env, key)


@pytest.mark.s3_remote
def test_the_persons_s3_keys_reach_the_remote_and_nothing_else(
    client_env, person_s3, artifacts_destination
):
    bucket, _, prefix = client_env["DVC_REMOTE_URL"].removeprefix("s3://").partition("/")
    probe = f"{prefix.strip('/')}/isolation-probe"
    person_s3.put_object(Bucket=bucket, Key=probe, Body=b"probe")
    assert person_s3.get_object(Bucket=bucket, Key=probe)["Body"].read() == b"probe"
    person_s3.delete_object(Bucket=bucket, Key=probe)
    artifacts_bucket = artifacts_destination.removeprefix("s3://").partition("/")[0]
    attacks = [
        lambda: person_s3.list_objects_v2(Bucket=artifacts_bucket),
        lambda: person_s3.put_object(Bucket=artifacts_bucket, Key="forged", Body=b"x"),
        lambda: person_s3.put_object(Bucket=bucket, Key="outside-the-prefix", Body=b"x"),
        lambda: person_s3.put_bucket_policy(Bucket=bucket, Policy='{"Statement": []}'),
        lambda: person_s3.delete_bucket_policy(Bucket=bucket),
    ]
    for attack in attacks:
        with pytest.raises(person_s3.exceptions.ClientError, match="AccessDenied"):
            attack()
