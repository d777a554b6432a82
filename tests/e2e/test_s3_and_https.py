"""The Docker target with the production settings the chart has too: MLflow's artifacts in a
bucket of an existing S3 store (`mlops_docker_artifacts_backend: s3`) and HTTPS on MLflow itself
(`mlops_docker_mlflow_tls_*`), end to end: `make deploy` against a real Ceph RADOS Gateway
reached over the host's network, the stock `mlflow` client of a person over HTTPS, and the
boundaries a hostile person, an eavesdropper or a log reader would try. The people's DVC remote
is a bucket of its own on the same store (`mlops_docker_dvc_backend: s3`): the stock `dvc` with
each person's own S3 keys, confined by the policy the server sets from people.yml.

The store runs outside the stack (its own network, a port on the Docker host's bridge address),
as a site's store would: the deploy knows only its endpoint, bucket and a credentials file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.e2e_support import (
    REPO_ROOT,
    container_states,
    deployed_environment,
    docker_json,
    make,
    person_connection,
    recap_changed,
    run,
    write_e2e_settings,
)
from tests.support.docker import Sandbox
from tests.support.dvc import (
    clone_without_data,
    init_project,
    run_dvc,
    use_s3_remote,
    write_s3_credentials,
)
from tests.support.s3store import S3Store, bridge_gateway, start_s3store
from tests.support.tls import assert_https_only, new_ca

ENV_NAME = "e2e-s3"
UID = 10001  # mlops_docker_uid (its default): the files below are the containers' to read
BUILD_DIR = REPO_ROOT / "build" / ENV_NAME
SETTINGS = {
    "mlops_docker_mlflow_port": 18900,
    "mlops_docker_sftp_port": 18922,
    "mlops_docker_mlflow_workers": 1,
}
BUCKET, PREFIX = "team-artifacts", "mlflow"
DVC_BUCKET, DVC_PREFIX = "team-data", "dvc"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, mlflow
    mlflow.set_experiment("s3-e2e")
    with mlflow.start_run() as run:
        mlflow.log_artifact(sys.argv[1], artifact_path="data")
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=sys.argv[2])
    print("RUN=" + run.info.run_id + " " + run.info.experiment_id + " " + run.info.artifact_uri)
    """
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    sandbox = Sandbox(f"mlops-test-{ENV_NAME}")
    try:
        yield start_s3store(
            sandbox, tmp_path_factory.mktemp("s3store"), publish_address=bridge_gateway()
        )
    finally:
        sandbox.destroy()


@pytest.fixture(scope="module")
def server_keys(store: S3Store) -> tuple[str, str]:
    """The MLflow server's own S3 user, owner of the bucket."""
    keys = store.add_user("mlflow-server")
    store.client(*keys).create_bucket(Bucket=BUCKET)
    return keys


@pytest.fixture(scope="module")
def credentials_file(
    server_keys: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The credentials file as an operator puts it on the Docker host: the containers' UID
    may read it, no one else."""
    path = tmp_path_factory.mktemp("s3-credentials") / "credentials"
    access, secret = server_keys
    path.write_text(f"[default]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n")
    path.chmod(0o400)
    os.chown(path, UID, 0)
    return path


@pytest.fixture(scope="module")
def tls_settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """MLflow's certificate for the public host (the bind address), as an operator puts it
    on the Docker host: the key the containers' UID may read, no one else."""
    directory = tmp_path_factory.mktemp("mlflow-tls")
    ca = new_ca("e2e MLflow CA")
    cert, key = ca.issue_server(directory / "server", "127.0.0.1", "localhost")
    key.chmod(0o400)
    os.chown(key, UID, 0)
    return {
        "mlops_docker_mlflow_tls_cert_file": str(cert),
        "mlops_docker_mlflow_tls_key_file": str(key),
        "mlops_docker_mlflow_tls_ca_file": str(ca.write(directory / "ca.crt")),
    }


def write_settings(**overrides: object) -> None:
    write_e2e_settings(ENV_NAME, **SETTINGS, mlops_docker_uid=UID, **overrides)


@pytest.fixture(scope="module")
def people_keys(store: S3Store, server_keys: tuple[str, str]) -> dict[str, tuple[str, str]]:
    """What the store's admin does for a DVC remote on S3: a bucket owned by the server's
    user, and an S3 user per person, named as in people.yml (carol is added below)."""
    store.client(*server_keys).create_bucket(Bucket=DVC_BUCKET)
    return {name: store.add_user(name) for name in ("alice", "bob", "carol")}


@pytest.fixture(scope="module")
def s3_settings(
    store: S3Store, credentials_file: Path, people_keys: dict[str, tuple[str, str]]
) -> dict[str, object]:
    """Artifacts and the people's DVC remote on the store, each in a bucket of its own."""
    return {
        "mlops_docker_artifacts_backend": "s3",
        "mlops_docker_artifacts_s3_endpoint_url": store.url,
        "mlops_docker_artifacts_s3_bucket": BUCKET,
        "mlops_docker_artifacts_s3_prefix": PREFIX,
        "mlops_docker_artifacts_s3_credentials_file": str(credentials_file),
        "mlops_docker_dvc_backend": "s3",
        "mlops_docker_dvc_s3_bucket": DVC_BUCKET,
        "mlops_docker_dvc_s3_prefix": DVC_PREFIX,
    }


@pytest.fixture(scope="module")
def deployed(s3_settings: dict[str, object], tls_settings: dict[str, object]) -> Iterator[str]:
    """The deploy's output."""
    with deployed_environment(
        ENV_NAME, **SETTINGS, mlops_docker_uid=UID, **s3_settings, **tls_settings
    ) as result:
        yield result.output


def connection(name: str) -> dict[str, str]:
    return person_connection(ENV_NAME, name)


def session(name: str) -> requests.Session:
    """A person's HTTP client as their connection.env sets it up: login and MLflow's CA."""
    values = connection(name)
    http = requests.Session()
    http.auth = (values["MLFLOW_TRACKING_USERNAME"], values["MLFLOW_TRACKING_PASSWORD"])
    http.verify = values["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    # Else requests prefers a REQUESTS_CA_BUNDLE of the environment to the session's CA.
    http.trust_env = False
    return http


@pytest.fixture(scope="module")
def logged(deployed: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """alice (editor) logs an artifact with the stock client and downloads it again."""
    work = tmp_path_factory.mktemp("client")
    artifact = work / "sample.bin"
    artifact.write_bytes(os.urandom(3 * 1024 * 1024))
    result = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, str(artifact), str(work / "down")],
        env={**os.environ, **connection("alice")},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RUN="))
    run_id, experiment_id, artifact_uri = line[4:].split()
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "artifact_uri": artifact_uri,
        "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
        "downloaded": hashlib.sha256(
            (work / "down" / "data" / "sample.bin").read_bytes()
        ).hexdigest(),
    }


@pytest.fixture(scope="module")
def bucket(store: S3Store, server_keys: tuple[str, str]) -> Any:
    """An S3 client of the bucket's owner, to look at what the server stored."""
    return store.client(*server_keys)


def bucket_keys(bucket: Any) -> list[str]:
    listed = bucket.list_objects_v2(Bucket=BUCKET)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_artifacts_go_to_the_bucket_and_come_back(logged, bucket):
    assert logged["artifact_uri"].startswith("mlflow-artifacts:/"), logged["artifact_uri"]
    assert logged["downloaded"] == logged["sha256"]
    key = f"{PREFIX}/{logged['experiment_id']}/{logged['run_id']}/artifacts/data/sample.bin"
    assert key in bucket_keys(bucket)
    body = bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == logged["sha256"]


def artifact_url(logged: dict[str, str], name: str) -> str:
    base = connection("alice")["MLFLOW_TRACKING_URI"]
    return f"{base}{ARTIFACTS}/{logged['experiment_id']}/{logged['run_id']}/artifacts/{name}"


def test_a_reader_cannot_write_artifacts_into_the_bucket(logged, bucket):
    bob = session("bob")
    response = bob.put(artifact_url(logged, "data/evil.bin"), data=b"x", timeout=60)
    assert response.status_code == 403, response.text
    # He may read what he is allowed to see.
    response = bob.get(artifact_url(logged, "data/sample.bin"), timeout=60)
    assert response.status_code == 200
    assert not [key for key in bucket_keys(bucket) if key.endswith("evil.bin")]


def test_no_login_no_artifact(logged):
    ca = connection("alice")["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    response = requests.get(artifact_url(logged, "data/sample.bin"), verify=ca, timeout=60)
    assert response.status_code == 401


def test_an_editor_cannot_write_outside_the_prefix(logged, bucket):
    alice = session("alice")
    base = f"{connection('alice')['MLFLOW_TRACKING_URI']}{ARTIFACTS}"
    for path in ("../escaped.bin", "%2E%2E/escaped.bin", f"{logged['experiment_id']}/../../x.bin"):
        response = alice.put(f"{base}/{path}", data=b"x", timeout=60)
        assert response.status_code >= 400, (path, response.status_code)
    assert all(key.startswith(f"{PREFIX}/") for key in bucket_keys(bucket)), bucket_keys(bucket)


def test_the_server_keys_show_nowhere(deployed, server_keys, logged):
    secret = server_keys[1]
    assert secret not in deployed
    (info,) = docker_json("inspect", f"mlops-{ENV_NAME}-mlflow")
    assert secret not in json.dumps(info), "in the container's environment, arguments or labels"
    logs = subprocess.run(
        ["docker", "logs", f"mlops-{ENV_NAME}-mlflow"], capture_output=True, text=True, check=True
    )
    assert secret not in logs.stdout + logs.stderr
    for person in ("alice", "bob"):
        assert secret not in (BUILD_DIR / "people" / person / "connection.env").read_text()


def test_a_second_deploy_changes_nothing(logged):
    result = make("deploy", ENV=ENV_NAME)
    assert result.returncode == 0, result.explain()
    assert set(recap_changed(result.output).values()) == {0}, result.output[-3000:]


def test_a_credentials_file_others_may_read_is_refused(logged, credentials_file):
    before = container_states(ENV_NAME)
    credentials_file.chmod(0o444)
    try:
        result = make("deploy", ENV=ENV_NAME)
    finally:
        credentials_file.chmod(0o400)
    assert result.returncode != 0
    assert "mlops_docker_artifacts_s3_credentials_file" in result.output
    assert f"chmod 0400 {credentials_file}" in result.output
    assert container_states(ENV_NAME) == before


def test_moving_the_destination_under_existing_runs_is_refused(logged, s3_settings, tls_settings):
    before = container_states(ENV_NAME)
    write_settings(
        **{**s3_settings, "mlops_docker_artifacts_s3_prefix": "elsewhere"}, **tls_settings
    )
    try:
        result = make("deploy", ENV=ENV_NAME)
    finally:
        write_settings(**s3_settings, **tls_settings)
    assert result.returncode != 0
    assert f"the artifacts of the runs so far are at s3://{BUCKET}/{PREFIX}" in result.output
    assert "Nothing was changed" in result.output
    assert container_states(ENV_NAME) == before
    # Back on the recorded destination, the run's artifact is served again.
    response = session("alice").get(artifact_url(logged, "data/sample.bin"), timeout=60)
    assert hashlib.sha256(response.content).hexdigest() == logged["sha256"]


def test_clients_reach_mlflow_over_https_only(logged):
    alice = connection("alice")
    port = SETTINGS["mlops_docker_mlflow_port"]
    assert alice["MLFLOW_TRACKING_URI"] == f"https://127.0.0.1:{port}"
    # The stock client of `logged` went through HTTPS, checking the certificate with this CA.
    assert Path(alice["MLFLOW_TRACKING_SERVER_CERT_PATH"]).parent == BUILD_DIR / "people" / "alice"
    assert_https_only(alice["MLFLOW_TRACKING_URI"], port)


def test_the_smoke_suite_passes_on_these_settings(logged, people_keys, tmp_path):
    """`make smoke` as an operator runs it after the deploy: the stock clients over HTTPS with
    the CA, the UI in Chromium, DVC on S3 with the person's own keys, every boundary, and the
    artifact's bytes in the bucket. Without those keys it stops at once, naming the fix."""
    command = ["make", "--no-print-directory", "smoke", f"ENV={ENV_NAME}"]
    without = run([*command], env={"PYTEST_ADDOPTS": "-x -k dvc_objects_are_in_the_bucket"})
    assert without.returncode != 0
    assert "set MLOPS_SMOKE_S3_CREDENTIALS to alice's AWS credentials file" in without.output
    keys = write_s3_credentials(tmp_path / "alice-s3", *people_keys["alice"])
    result = run(command, env={"MLOPS_SMOKE_S3_CREDENTIALS": str(keys), "PYTEST_ADDOPTS": "-rA"})
    assert result.returncode == 0, result.explain()
    summary = result.output.rstrip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "skipped" not in summary, f"a smoke test did not run here: {summary}"
    for s3_check in (
        "test_dvc.py::test_dvc_objects_are_in_the_bucket",
        "test_isolation.py::test_the_persons_sftp_key_reaches_nothing",
        "test_isolation.py::test_the_persons_s3_keys_reach_the_remote_and_nothing_else",
    ):
        assert f"PASSED tests/smoke/{s3_check}" in result.output, s3_check
    assert "test_dvc_objects_are_on_sftp" not in result.output, "an SFTP-remote check ran"


@pytest.fixture(scope="module")
def dvc_on_s3(logged: dict[str, str]) -> str:
    """carol (reader, no DVC access) added the documented way: `make add-user`, which deploys
    (and MLflow sets the remote's policy anew). Returns that deploy's output."""
    result = make("add-user", ENV=ENV_NAME, NAME="carol", ROLE="reader", DVC="none")
    assert result.returncode == 0, result.explain()
    return result.output


def person_shell(name: str, keys: tuple[str, str], where: Path) -> tuple[dict[str, str], Path]:
    """A person's shell (their connection.env sourced) and their own S3 keys in a 0600
    credentials file."""
    return connection(name), write_s3_credentials(where / f"{name}-s3-credentials", *keys)


def dvc(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_dvc(*args, cwd=project, env=env, timeout=300)


@pytest.fixture(scope="module")
def pushed(
    dvc_on_s3: str, people_keys: dict[str, tuple[str, str]], tmp_path_factory
) -> dict[str, Any]:
    """alice (dvc write) pushes a dataset with the stock dvc and her own keys."""
    where = tmp_path_factory.mktemp("dvc")
    env, credentials = person_shell("alice", people_keys["alice"], where)
    project = init_project(where / "alice", env)
    # As docs/docker.md says: the remote's URL and endpoint in git, her keys in config.local.
    use_s3_remote(project, credentials, env["DVC_REMOTE_URL"], env["DVC_S3_ENDPOINT_URL"], env)
    (project / "data.csv").write_bytes(os.urandom(256 * 1024))
    assert dvc(project, env, "dvc", "add", "data.csv").returncode == 0
    result = dvc(project, env, "dvc", "push")
    assert result.returncode == 0, result.stderr
    return {"project": project, "sha256": sha256_of(project / "data.csv")}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clone_for(pushed: dict[str, Any], name: str, keys: tuple[str, str], where: Path) -> tuple:
    """Another person's `git clone` of alice's project, with their own keys."""
    env, credentials = person_shell(name, keys, where)
    project = clone_without_data(pushed["project"], where / name, "data.csv")
    use_s3_remote(project, credentials, env=env)
    return project, env


def test_the_people_get_the_s3_remote_by_their_level(dvc_on_s3, store):
    """(`make smoke` above attacked the store with alice's keys and SFTP with her key.)"""
    alice, carol = connection("alice"), connection("carol")
    assert alice["DVC_REMOTE_URL"] == f"s3://{DVC_BUCKET}/{DVC_PREFIX}"
    assert alice["DVC_S3_ENDPOINT_URL"] == store.url
    assert carol["DVC_REMOTE_URL"] == "", "dvc none: no remote"


def test_a_writer_pushes_into_the_remote_under_its_prefix(pushed, store, server_keys):
    listed = store.client(*server_keys).list_objects_v2(Bucket=DVC_BUCKET)
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert keys, "nothing was pushed"
    assert all(key.startswith(f"{DVC_PREFIX}/") for key in keys), keys


def test_a_reader_pulls_the_exact_data_and_cannot_push(pushed, people_keys, tmp_path):
    project, env = clone_for(pushed, "bob", people_keys["bob"], tmp_path)
    result = dvc(project, env, "dvc", "pull")
    assert result.returncode == 0, result.stderr
    assert sha256_of(project / "data.csv") == pushed["sha256"]
    (project / "forged.csv").write_text("forged\n")
    assert dvc(project, env, "dvc", "add", "forged.csv").returncode == 0
    assert dvc(project, env, "dvc", "push").returncode != 0


def test_someone_without_dvc_access_cannot_pull(pushed, people_keys, tmp_path):
    project, env = clone_for(pushed, "carol", people_keys["carol"], tmp_path)
    assert dvc(project, env, "dvc", "pull").returncode != 0
    assert not (project / "data.csv").exists()


def test_taking_dvc_access_away_takes_effect_at_the_next_deploy(pushed, people_keys, tmp_path):
    """bob's level goes to none in people.yml (`make add-user` updates him): the server's
    policy follows, and the clone he pulled before cannot pull again."""
    project, env = clone_for(pushed, "bob", people_keys["bob"], tmp_path)
    assert dvc(project, env, "dvc", "pull").returncode == 0
    result = make("add-user", ENV=ENV_NAME, NAME="bob", ROLE="reader", DVC="none")
    assert result.returncode == 0, result.explain()
    (project / "data.csv").unlink()
    shutil.rmtree(project / ".dvc" / "cache")
    assert dvc(project, env, "dvc", "pull").returncode != 0
    assert not (project / "data.csv").exists()
