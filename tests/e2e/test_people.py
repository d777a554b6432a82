"""People on the Docker target, end to end: each person's own MLflow login and SFTP key, the
make targets that add, rotate and remove them, and every boundary crossed as a hostile person
would try it, with the stock mlflow, dvc, ssh and sftp clients.

The module deploys its own environment (deploy/e2e-people/, made here from deploy/e2e/ with
another prefix and ports, removed at the end), so `make add-user ENV=e2e-people` edits a
people.yml of its own.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlopskit.environments import parse_connection_env

from tests.e2e.e2e_support import (
    REPO_ROOT,
    deployed_environment,
    make,
    person_connection,
    recap_changed,
)
from tests.support.dvc import run_dvc

ENV_NAME = "e2e-people"
DEPLOY_DIR = REPO_ROOT / "deploy" / ENV_NAME
BUILD_DIR = REPO_ROOT / "build" / ENV_NAME
MLFLOW_PORT, SFTP_PORT = 18600, 18622
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"


@pytest.fixture(scope="module", autouse=True)
def environment() -> Iterator[None]:
    with deployed_environment(
        ENV_NAME,
        mlops_docker_mlflow_port=MLFLOW_PORT,
        mlops_docker_sftp_port=SFTP_PORT,
        mlops_docker_mlflow_workers=1,
    ):
        yield


def connection(name: str) -> dict[str, str]:
    return person_connection(ENV_NAME, name)


def admin() -> dict[str, str]:
    return parse_connection_env((BUILD_DIR / "admin.env").read_text())


def status(values: dict[str, str], method: str, path: str, **kwargs: object) -> int:
    auth = (values["MLFLOW_TRACKING_USERNAME"], values["MLFLOW_TRACKING_PASSWORD"])
    url = values["MLFLOW_TRACKING_URI"] + path
    return requests.request(method, url, auth=auth, timeout=60, **kwargs).status_code


def openssh(values: dict[str, str], batch: str, key: str | None = None) -> str:
    """The stock `sftp` client in batch mode; returns what it printed."""
    argv = [
        "sftp", "-b", "-", "-P", values["SFTP_PORT"],
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={values['SFTP_KNOWN_HOSTS']}",
        "-i", key or values["SFTP_PRIVATE_KEY"],
        f"{values['SFTP_USERNAME']}@{values['SFTP_HOST']}",
    ]  # fmt: skip
    result = subprocess.run(
        argv, input=batch, capture_output=True, text=True, timeout=120, check=False
    )
    return result.stdout + result.stderr


def dvc(values: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_dvc(*args, cwd=cwd, env=values)


def dvc_project(values: dict[str, str], root: Path) -> Path:
    """A git + DVC project whose remote is the person's own, as the README sets it up."""
    root.mkdir(parents=True)
    for args in (
        ("git", "init", "-q"),
        ("dvc", "init", "-q"),
        ("dvc", "remote", "add", "-d", "store", values["DVC_REMOTE_URL"]),
        ("dvc", "remote", "modify", "--local", "store", "keyfile", values["SFTP_PRIVATE_KEY"]),
    ):
        result = dvc(values, *args, cwd=root)
        assert result.returncode == 0, result.stderr
    return root


def test_each_person_gets_only_their_own_credentials():
    admin_password = admin()["MLFLOW_TRACKING_PASSWORD"]
    for name in ("alice", "bob"):
        path = BUILD_DIR / "people" / name / "connection.env"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        values = connection(name)
        assert values["MLFLOW_TRACKING_USERNAME"] == name
        assert admin_password not in path.read_text()
        assert values["SFTP_PRIVATE_KEY"] == str(BUILD_DIR / "people" / name / "id_rsa")
        assert status(values, "GET", SEARCH) == 200
    assert (
        connection("alice")["MLFLOW_TRACKING_PASSWORD"]
        not in (BUILD_DIR / "people" / "bob" / "connection.env").read_text()
    )
    assert not (BUILD_DIR / "connection.env").exists(), "no shared connection file any more"


def test_second_deploy_with_people_changes_nothing():
    result = make("deploy", ENV=ENV_NAME)
    assert result.returncode == 0, result.explain()
    assert set(recap_changed(result.output).values()) == {0}, result.output[-3000:]


@pytest.fixture(scope="module")
def pushed(tmp_path_factory) -> dict[str, object]:
    """alice (dvc write) pushes a dataset, like the README's steps."""
    repo = dvc_project(connection("alice"), tmp_path_factory.mktemp("alice") / "project")
    (repo / "data").mkdir()
    rows = "".join(f"{i},{i * i}\n" for i in range(500))
    (repo / "data" / "train.csv").write_text("x,y\n" + rows)
    for args in (("dvc", "add", "data"), ("git", "add", "-A"), ("git", "commit", "-qm", "data"),
                 ("dvc", "push")):  # fmt: skip
        result = dvc(connection("alice"), *args, cwd=repo)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return {"repo": repo, "csv": (repo / "data" / "train.csv").read_text()}


def test_reader_pulls_and_cannot_push(pushed, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(pushed["repo"]), str(clone)], check=True)
    bob = connection("bob")
    for args in (
        ("dvc", "remote", "modify", "--local", "store", "keyfile", bob["SFTP_PRIVATE_KEY"]),
        ("dvc", "pull"),
    ):
        result = dvc(bob, *args, cwd=clone)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    assert (clone / "data" / "train.csv").read_text() == pushed["csv"]
    (clone / "data" / "forged.csv").write_text("poisoned\n")
    assert dvc(bob, "dvc", "add", "data", cwd=clone).returncode == 0
    push = dvc(bob, "dvc", "push", cwd=clone)
    assert push.returncode != 0, push.stdout
    output = openssh(bob, "-rm /data/dvc/files/md5/*/*\n-mkdir /data/dvc/forged\n")
    assert output.count("Permission denied") >= 2, output


def test_people_cannot_read_secrets_or_mlflow_artifacts():
    for name in ("alice", "bob"):
        output = openssh(
            connection(name),
            # The Docker target mounts the host keys; sshd reads private copies in /tmp/sftp.
            "-get /etc/sftp/host-keys/ssh_host_ecdsa_key /dev/null\n"
            "-get /tmp/sftp/host-keys/ssh_host_rsa_key /dev/null\n"
            "-get /tmp/sftp/sshd_config /dev/null\n"
            "-put /etc/hostname /tmp/sftp/home/.ssh/authorized_keys\n"
            "-ls /data/artifacts\n-ls /\n",
        )
        assert output.count("Permission denied") == 6, output


def test_reader_reads_runs_and_gets_403_on_writes():
    alice, bob = connection("alice"), connection("bob")
    name = f"people-{uuid.uuid4().hex[:6]}"
    response = requests.post(
        alice["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/create",
        json={"name": name},
        auth=(alice["MLFLOW_TRACKING_USERNAME"], alice["MLFLOW_TRACKING_PASSWORD"]),
        timeout=60,
    )
    assert response.ok, response.text
    experiment_id = response.json()["experiment_id"]
    api = "/api/2.0/mlflow"
    in_experiment = {"experiment_id": experiment_id}
    assert status(bob, "GET", f"{api}/experiments/get", params=in_experiment) == 200
    assert status(bob, "POST", f"{api}/experiments/create", json={"name": name + "b"}) == 403
    assert status(bob, "POST", f"{api}/runs/create", json=in_experiment) == 403
    assert status(bob, "POST", f"{api}/registered-models/create", json={"name": name}) == 403
    assert status(alice, "POST", f"{api}/runs/create", json=in_experiment) == 200


def test_metrics_account_reads_metrics_only():
    values = admin()
    metrics = {
        "MLFLOW_TRACKING_URI": values["MLFLOW_TRACKING_URI"],
        "MLFLOW_TRACKING_USERNAME": values["MLFLOW_METRICS_USERNAME"],
        "MLFLOW_TRACKING_PASSWORD": values["MLFLOW_METRICS_PASSWORD"],
    }
    assert status(metrics, "GET", "/metrics") == 200
    assert status(metrics, "POST", "/api/2.0/mlflow/experiments/create", json={"name": "m"}) == 403
    assert status(connection("alice"), "GET", "/metrics") == 403


def test_add_user_with_their_own_public_key(tmp_path):
    key = tmp_path / "carol"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    result = make(
        "add-user", ENV=ENV_NAME, NAME="carol", ROLE="reader", DVC="read", PUBKEY=f"{key}.pub"
    )
    assert result.returncode == 0, result.explain()
    carol = connection("carol")
    assert not (BUILD_DIR / "people" / "carol" / "id_rsa").exists(), "her own key, none made"
    assert status(carol, "GET", SEARCH) == 200
    output = openssh(carol, "-ls /data/dvc\n-put /etc/hostname /data/dvc/x\n", key=str(key))
    assert "Permission denied (publickey)" not in output
    assert "Permission denied" in output, "a read person cannot upload"


def test_bad_input_names_the_problem_and_changes_nothing():
    before = (DEPLOY_DIR / "people.yml").read_text()
    for variables, message in (
        ({"NAME": "Eve!"}, "NAME='Eve!'"),
        ({"NAME": "eve", "ROLE": "owner"}, "ROLE='owner' must be one of"),
        ({"NAME": "eve", "DVC": "all"}, "DVC='all' must be one of"),
        ({"NAME": "admin"}, "reserved"),
        ({"NAME": "eve", "PUBKEY": "/etc/hostname"}, "does not hold exactly one OpenSSH public"),
    ):
        result = make("add-user", ENV=ENV_NAME, **variables)
        assert result.returncode != 0
        assert message in result.output, result.output[-2000:]
    assert (DEPLOY_DIR / "people.yml").read_text() == before
    # A hand-edited mistake stops the deploy before anything changes.
    (DEPLOY_DIR / "people.yml").write_text(before + "  - {name: eve, mlflow: owner}\n")
    try:
        result = make("deploy", ENV=ENV_NAME)
        assert result.returncode != 0
        assert "person eve" in result.output, result.output[-2000:]
        assert "got owner" in result.output
    finally:
        (DEPLOY_DIR / "people.yml").write_text(before)


def test_rotate_user_replaces_password_and_key():
    old = connection("alice")
    old_key = BUILD_DIR / "old-alice-key"
    shutil.copy(old["SFTP_PRIVATE_KEY"], old_key)
    result = make("rotate-user", ENV=ENV_NAME, NAME="alice")
    assert result.returncode == 0, result.explain()
    new = connection("alice")
    assert new["MLFLOW_TRACKING_PASSWORD"] != old["MLFLOW_TRACKING_PASSWORD"]
    assert status(old, "GET", SEARCH) == 401
    assert status(new, "GET", SEARCH) == 200
    assert "Permission denied (publickey)" in openssh(new, "-ls /data/dvc\n", key=str(old_key))
    assert "Permission denied" not in openssh(new, "-ls /data/dvc\n")


def test_removed_person_loses_access_and_their_work_stays(tmp_path):
    assert make("add-user", ENV=ENV_NAME, NAME="dave", ROLE="editor", DVC="write").returncode == 0
    dave = connection("dave")
    dave_key = tmp_path / "dave-key"
    shutil.copy(dave["SFTP_PRIVATE_KEY"], dave_key)
    auth = (dave["MLFLOW_TRACKING_USERNAME"], dave["MLFLOW_TRACKING_PASSWORD"])
    experiment = requests.post(
        dave["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/create",
        json={"name": f"dave-{uuid.uuid4().hex[:6]}"}, auth=auth, timeout=60,
    ).json()["experiment_id"]  # fmt: skip
    run_id = requests.post(
        dave["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment}, auth=auth, timeout=60,
    ).json()["run"]["info"]["run_id"]  # fmt: skip
    assert "Permission denied" not in openssh(dave, "-put /etc/hostname /data/dvc/from-dave\n")

    result = make("remove-user", ENV=ENV_NAME, NAME="dave")
    assert result.returncode == 0, result.explain()
    assert status(dave, "GET", SEARCH) == 401
    # Their folder is gone with them; the server's host keys are the same for everyone.
    dave["SFTP_KNOWN_HOSTS"] = str(BUILD_DIR / "known_hosts")
    denied = openssh(dave, "-ls /data/dvc\n", key=str(dave_key))
    assert "Permission denied (publickey)" in denied, denied
    assert not (BUILD_DIR / "people" / "dave").exists()
    bob = connection("bob")
    assert status(bob, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id}) == 200
    assert "from-dave" in openssh(bob, "-ls /data/dvc\n")
