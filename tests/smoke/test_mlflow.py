"""The MLflow client as a data scientist uses it, then the same data checked at the source:
rows in PostgreSQL (psycopg2, run inside the MLflow container, which alone may reach the
database) and the artifact's bytes where the server stores them: on the SFTP volume (inside the
SFTP container: no person's key reaches MLflow's artifact area), or in the S3 bucket (inside the
MLflow container, with the server's own keys: people have none)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.smoke.smoke_support import ALIAS, ARTIFACT_BYTES, sha256_of
from tests.smoke.stack import Stack

DB_PROBE = Path(__file__).with_name("mlflow_db_probe.py")
S3_PROBE = Path(__file__).with_name("mlflow_s3_probe.py")
DB_PROBE_TIMEOUT_S = 120


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
def stored_rows(stack: Stack, tracked, admin) -> dict:
    """The smoke run's rows, read by mlflow_db_probe.py inside the MLflow container (fed on
    stdin through `docker exec -i` / `kubectl exec -i`) with the container's own DB settings:
    no test traffic to the database's private address, no password on any command line."""
    query = {
        "experiment_id": tracked["experiment_id"],
        "run_id": tracked["run_id"],
        "metric": "loss",
        "model_name": tracked["model_name"],
        "alias": ALIAS,
        "admin_username": admin["MLFLOW_TRACKING_USERNAME"],
    }
    argv = [*stack.exec_argv("mlflow"), "python", "-", json.dumps(query)]
    result = subprocess.run(
        argv,
        input=DB_PROBE.read_text(),
        capture_output=True,
        text=True,
        timeout=DB_PROBE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"{argv[:-1]} exited {result.returncode}: {result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_rows_exist_in_postgresql(stored_rows, tracked):
    assert stored_rows["experiment"] == [[tracked["experiment_name"]]]
    assert stored_rows["params"] == [["C", "1.0"], ["solver", "lbfgs"]]
    assert stored_rows["metrics"] == [[0, 0.9], [1, 0.6], [2, 0.4]]
    assert stored_rows["alias"] == [[int(tracked["model_version"])]]
    assert stored_rows["admin"] == [[True]], "the MLflow admin must exist in the auth database"


def in_container(stack: Stack, service: str, *argv: str, stdin: str = "") -> str:
    result = subprocess.run(
        [*stack.exec_argv(service), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{argv[:2]} in {service}: {result.stderr[-2000:]}"
    return result.stdout


def test_artifact_bytes_where_the_server_stores_them_match(
    stack: Stack, tracked, artifacts_destination: str
):
    """The bytes where the data is: on the SFTP server's volume, read inside its container
    (people's keys cannot reach MLflow's artifact area, test_isolation.py), or in the bucket of
    an s3:// destination, read inside the MLflow container with the server's own keys."""
    below = f"{tracked['experiment_id']}/{tracked['run_id']}/artifacts/{tracked['artifact']}"
    if artifacts_destination.startswith("s3://"):
        digest = in_container(stack, "mlflow", "python", "-", below, stdin=S3_PROBE.read_text())
    else:
        digest = in_container(stack, "sftp", "sha256sum", f"/data/artifacts/{below}")
    assert digest.split()[0] == tracked["sha256"]
