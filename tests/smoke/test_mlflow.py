"""The MLflow client as a data scientist uses it, then the same data checked at the source:
rows in PostgreSQL (psycopg2) and the artifact's bytes on SFTP (paramiko)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import paramiko
import psycopg2
import pytest

from tests.smoke.smoke_support import ALIAS, ARTIFACT_BYTES, sha256_of


def test_run_has_params_and_metrics(mlflow, tracked):
    run = mlflow.get_run(tracked["run_id"])
    assert run.data.params == {"C": "1.0", "solver": "lbfgs"}
    assert run.data.metrics["loss"] == pytest.approx(0.4)
    history = mlflow.MlflowClient().get_metric_history(tracked["run_id"], "loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0.9, 0.6, 0.4]


def test_artifact_round_trips_through_the_server(mlflow, tracked, tmp_path):
    run = mlflow.get_run(tracked["run_id"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    local = mlflow.artifacts.download_artifacts(
        run_id=tracked["run_id"], artifact_path=tracked["artifact"], dst_path=str(tmp_path)
    )
    assert Path(local).stat().st_size == ARTIFACT_BYTES
    assert sha256_of(Path(local)) == tracked["sha256"]


def test_registered_model_loads_by_alias_and_predicts(mlflow, tracked):
    version = mlflow.MlflowClient().get_model_version_by_alias(tracked["model_name"], ALIAS)
    assert version.version == tracked["model_version"]
    loaded = mlflow.pyfunc.load_model(f"models:/{tracked['model_name']}@{ALIAS}")
    sample = tracked["features"][::10]
    np.testing.assert_array_equal(loaded.predict(sample), tracked["model"].predict(sample))


@pytest.fixture(scope="module")
def database(containers, docker_inspect, secret):
    """psycopg2 to the PostgreSQL container on its private network (it has no host port)."""
    networks = docker_inspect(containers["postgres"])["NetworkSettings"]["Networks"]
    (address,) = {net["IPAddress"] for net in networks.values() if net["IPAddress"]}

    def connect(dbname: str):
        return psycopg2.connect(
            host=address,
            port=5432,
            user="mlflow",
            password=secret("postgres_app_password"),
            dbname=dbname,
            connect_timeout=10,
        )

    return connect


def test_rows_exist_in_postgresql(database, tracked):
    with database("mlflow") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT name FROM experiments WHERE experiment_id = %s",
            (int(tracked["experiment_id"]),),
        )
        assert cur.fetchone() == (tracked["experiment_name"],)
        cur.execute(
            "SELECT key, value FROM params WHERE run_uuid = %s ORDER BY key", (tracked["run_id"],)
        )
        assert cur.fetchall() == [("C", "1.0"), ("solver", "lbfgs")]
        cur.execute(
            "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = 'loss' ORDER BY step",
            (tracked["run_id"],),
        )
        assert cur.fetchall() == [(0, 0.9), (1, 0.6), (2, 0.4)]
        cur.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s",
            (tracked["model_name"], ALIAS),
        )
        assert cur.fetchone() == (int(tracked["model_version"]),)
    with database("mlflow_auth") as conn, conn.cursor() as cur:
        cur.execute("SELECT is_admin FROM users WHERE username = %s", ("admin",))
        assert cur.fetchone() == (True,)


@pytest.fixture(scope="module")
def sftp(client_env):
    """An SFTP session with the data scientists' key, checking the host key."""
    client = paramiko.SSHClient()
    client.load_host_keys(client_env["SFTP_KNOWN_HOSTS"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        client_env["SFTP_HOST"],
        port=int(client_env["SFTP_PORT"]),
        username=client_env["SFTP_USERNAME"],
        key_filename=client_env["SFTP_PRIVATE_KEY"],
        look_for_keys=False,
        allow_agent=False,
        timeout=15,
    )
    session = client.open_sftp()
    yield session
    session.close()
    client.close()


def test_artifact_bytes_on_sftp_match(sftp, tracked):
    # The server maps mlflow-artifacts:/<experiment>/<run>/artifacts/... onto its destination.
    run_dir = f"/data/artifacts/{tracked['experiment_id']}/{tracked['run_id']}"
    remote = f"{run_dir}/artifacts/{tracked['artifact']}"
    digest = hashlib.sha256()
    with sftp.open(remote, "rb") as handle:
        handle.prefetch()
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    assert digest.hexdigest() == tracked["sha256"]
