"""Fixtures of the smoke suite: a deployed environment, used the way a new user would.

MLOPS_ENV names the environment (deploy/<env>/settings.yml). The suite works as one person of
deploy/<env>/people.yml, with their own build/<env>/people/<name>/connection.env: MLOPS_SMOKE_USER,
else the first editor (or admin) with DVC write access. The admin's build/<env>/admin.env is
read only where a check needs the platform engineer's view.
Clients talk to the published 127.0.0.1 ports (or the port-forwards) only; container-level
checks go through `stack` (tests/smoke/stack.py): pytest-testinfra's docker backend on target
docker, its kubectl backend on kubernetes and openshift. What the suite creates is listed in
build/<env>/smoke-manifest.json, so that the restart check of `make test` can find it again.

With the DVC remote on S3 (`DVC_REMOTE_URL=s3://…` in connection.env) the person's data goes
with their own S3 keys, which the kit never holds: MLOPS_SMOKE_S3_CREDENTIALS names their AWS
credentials file. Their SFTP key then reaches nothing, so the checks that log in with it
(marker `sftp_login`) give way to the S3 remote's (marker `s3_remote`): deselected, not skipped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlopskit.environments import check_environment, read_admin, read_connection
from mlopskit.k8s_tools import ToolError, find_tool
from mlopskit.people import people_file, read_people
from mlopskit.stack import StackFileError
from mlopskit.stack import load_stack as load_stack_file

from tests.smoke.smoke_support import ALIAS, ARTIFACT_BYTES, sha256_of
from tests.smoke.stack import KUBERNETES_TARGETS, Stack, StackError, load_stack

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def env_name() -> str:
    name = os.environ.get("MLOPS_ENV", "")
    if not name:
        pytest.fail("set MLOPS_ENV to the environment to check (make smoke ENV=<name>)")
    return name


@pytest.fixture(scope="session")
def build_dir(env_name: str) -> Path:
    return REPO_ROOT / "build" / env_name


@pytest.fixture(scope="session")
def settings(env_name: str) -> dict:
    env = check_environment(env_name)
    return yaml.safe_load((env.deploy_dir / "settings.yml").read_text()) or {}


def pick_person(env_name: str) -> str:
    """Who the suite works as: a person who may log runs, register models and push data."""
    env = check_environment(env_name)
    if chosen := os.environ.get("MLOPS_SMOKE_USER", ""):
        return chosen
    for candidate in read_people(people_file(env)):
        # The suite needs the private key the deploy made, so not someone who gave their own.
        writer = candidate.mlflow in {"editor", "admin"} and candidate.dvc == "write"
        if writer and not candidate.public_key:
            return candidate.name
    pytest.fail(
        f"deploy/{env_name}/people.yml lists no editor with DVC write access and a generated "
        f"key: add one (`make add-user ENV={env_name} NAME=smoke`) or set MLOPS_SMOKE_USER"
    )


@pytest.fixture(scope="session")
def person(env_name: str) -> str:
    return pick_person(env_name)


# Markers (pyproject.toml) of the checks that apply to one kind of remote only.
REMOTE_MARKERS = {"sftp": "sftp_login", "s3": "s3_remote"}


def remote_kind(env_name: str) -> str:
    """s3 or sftp: where the person's connection.env points DVC."""
    url = read_connection(check_environment(env_name), pick_person(env_name))["DVC_REMOTE_URL"]
    return "s3" if url.startswith("s3://") else "sftp"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The checks of the other kind of remote do not apply here: deselected, not skipped."""
    env_name = os.environ.get("MLOPS_ENV", "")
    if not env_name:
        return  # the env_name fixture fails every test with the fix
    try:
        kind = remote_kind(env_name)
    except (Exception, pytest.fail.Exception):
        return  # no such environment or person: the session fixtures fail with the fix
    other = {marker for name, marker in REMOTE_MARKERS.items() if name != kind}
    deselected = [item for item in items if other & {m.name for m in item.iter_markers()}]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="session")
def s3_credentials(connection: dict[str, str], person: str) -> Path:
    """The person's own S3 keys (an AWS credentials file) for a DVC remote on S3."""
    path = Path(os.environ.get("MLOPS_SMOKE_S3_CREDENTIALS", ""))
    if not os.environ.get("MLOPS_SMOKE_S3_CREDENTIALS") or not path.is_file():
        pytest.fail(
            f"the DVC remote is on S3 ({connection['DVC_REMOTE_URL']}), reached with {person}'s "
            "own S3 keys, which the kit does not hold: set MLOPS_SMOKE_S3_CREDENTIALS to "
            f"{person}'s AWS credentials file ([default] aws_access_key_id, aws_secret_access_key)"
        )
    return path


@pytest.fixture(scope="session")
def person_s3(connection: dict[str, str], s3_credentials: Path) -> Any:
    """A boto3 S3 client with the person's own keys, at the endpoint their dvc uses."""
    import configparser

    import boto3

    keys = configparser.ConfigParser()
    keys.read(s3_credentials)
    return boto3.client(
        "s3",
        endpoint_url=connection.get("DVC_S3_ENDPOINT_URL") or None,
        aws_access_key_id=keys["default"]["aws_access_key_id"],
        aws_secret_access_key=keys["default"]["aws_secret_access_key"],
        verify=connection.get("DVC_S3_CA_FILE") or None,
    )


@pytest.fixture(scope="session")
def connection(env_name: str, person: str) -> dict[str, str]:
    return read_connection(check_environment(env_name), person)


@pytest.fixture(scope="session")
def admin(env_name: str) -> dict[str, str]:
    """build/<env>/admin.env: the platform engineer's credentials (for checks only)."""
    return read_admin(check_environment(env_name))


def endpoint_hint(env_name: str, what: str, host: str, port: int) -> str:
    """Why nothing answers at host:port, and the fix, in words a new user can act on. A
    port-forward's log is the one the deploy recorded in build/<env>/stack.json."""
    message = f"nothing answers at {host}:{port} ({what} of environment {env_name})"
    try:
        forward = load_stack_file(env_name).services.get(what.lower())
    except StackFileError:
        forward = None
    if forward is not None and forward.log_file is not None:
        log = (
            forward.log_file.relative_to(REPO_ROOT)
            if forward.log_file.is_relative_to(REPO_ROOT)
            else forward.log_file
        )
        return (
            f"{message}: its kubectl port-forward is not running (see {log}); "
            f"`make deploy ENV={env_name}` starts it again"
        )
    return f"{message}: is the stack up? `make deploy ENV={env_name}` converges it again"


@pytest.fixture(scope="session", autouse=True)
def endpoints_answer(env_name: str, connection: dict[str, str]) -> None:
    """Fail first, with the fix, when MLflow or SFTP does not answer (not with a bare
    `Connection refused` deep inside a client)."""
    tracking = urllib.parse.urlsplit(connection["MLFLOW_TRACKING_URI"])
    default_port = 443 if tracking.scheme == "https" else 80
    endpoints = [
        ("MLflow", tracking.hostname or "", tracking.port or default_port),
        ("SFTP", connection["SFTP_HOST"], int(connection["SFTP_PORT"])),
    ]
    for what, host, port in endpoints:
        try:
            socket.create_connection((host, port), timeout=10).close()
        except OSError:
            pytest.fail(endpoint_hint(env_name, what, host, port))


@pytest.fixture(scope="session")
def client_env(connection: dict[str, str]) -> Iterator[dict[str, str]]:
    """The environment after `. build/<env>/people/<name>/connection.env`, as the person has it."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in connection.items():
            patch.setenv(key, value)
        # A failing server should fail the suite in seconds, not after minutes of retries.
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
        # With HTTPS on MLflow and a private CA (connection.env names it for the mlflow client),
        # the suite's own requests calls check the server with the same CA.
        if ca := connection.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            patch.setenv("REQUESTS_CA_BUNDLE", ca)
        yield dict(os.environ)


@pytest.fixture(scope="session")
def artifacts_destination(stack: Stack) -> str:
    """Where the server keeps artifacts (sftp:// or s3://), from its own environment; empty
    in artifacts mode sftp, where clients write to the SFTP root themselves."""
    show = "import os; print(os.environ.get('MLFLOW_ARTIFACTS_DESTINATION', ''))"
    result = subprocess.run(
        [*stack.exec_argv("mlflow"), "python", "-c", show],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="session")
def stack(env_name: str, settings: dict, build_dir: Path) -> Iterator[Stack]:
    """Where the services run: names, testinfra hosts and exec argv of the env's target."""
    with pytest.MonkeyPatch.context() as patch:
        kubectl = "kubectl"
        if settings.get("mlops_target") in KUBERNETES_TARGETS:
            # The kubectl the deploy used; testinfra's kubectl backend runs it from PATH.
            try:
                kubectl = str(find_tool("kubectl"))
            except ToolError as exc:
                pytest.fail(str(exc))
            patch.setenv("PATH", f"{Path(kubectl).parent}{os.pathsep}{os.environ['PATH']}")
        try:
            found = load_stack(env_name, settings, build_dir, kubectl=kubectl)
        except StackError as exc:
            pytest.fail(str(exc))
        yield found


@pytest.fixture(scope="session")
def run_id_tag() -> str:
    """Unique per smoke run: names of experiments and models never collide with earlier runs."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def manifest(build_dir: Path) -> Iterator[dict]:
    """What this run created; merged into build/<env>/smoke-manifest.json at the end."""
    path = build_dir / "smoke-manifest.json"
    recorded: dict[str, list] = {"runs": [], "models": [], "dvc_objects": [], "experiments": []}
    yield recorded
    previous = json.loads(path.read_text()) if path.is_file() else {}
    for key, items in recorded.items():
        previous.setdefault(key, []).extend(items)
    path.write_text(json.dumps(previous, indent=2))


@pytest.fixture(scope="session")
def mlflow(client_env):
    import mlflow as mlflow_module

    mlflow_module.set_tracking_uri(client_env["MLFLOW_TRACKING_URI"])
    return mlflow_module


@pytest.fixture(scope="session")
def tracked(mlflow, run_id_tag, tmp_path_factory, manifest):
    """One run with params, metrics, a 50 MB artifact and a registered sklearn model."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    experiment_name = f"smoke-{run_id_tag}"
    model_name = f"smoke-model-{run_id_tag}"
    experiment_id = mlflow.create_experiment(experiment_name)
    artifact = tmp_path_factory.mktemp("artifact") / "weights.bin"
    artifact.write_bytes(os.urandom(ARTIFACT_BYTES))
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"smoke-run-{run_id_tag}") as run:
        mlflow.log_params({"C": 1.0, "solver": "lbfgs"})
        for step, value in enumerate((0.9, 0.6, 0.4)):
            mlflow.log_metric("loss", value, step=step)
        mlflow.log_artifact(str(artifact), artifact_path="blobs")
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=model_name, input_example=features[:2]
        )
    version = info.registered_model_version
    mlflow.MlflowClient().set_registered_model_alias(model_name, ALIAS, version)
    record = {
        "experiment_id": experiment_id,
        "experiment_name": experiment_name,
        "run_id": run.info.run_id,
        "artifact": "blobs/weights.bin",
        "sha256": sha256_of(artifact),
        "model_name": model_name,
        "model_version": str(version),
        "alias": ALIAS,
        "run_name": run.info.run_name,
    }
    manifest["experiments"].append(experiment_name)
    manifest["runs"].append(
        {"run_id": record["run_id"], "artifact": record["artifact"], "sha256": record["sha256"]}
    )
    manifest["models"].append(
        {"name": model_name, "version": record["model_version"], "alias": ALIAS}
    )
    return {**record, "model": model, "features": features}
