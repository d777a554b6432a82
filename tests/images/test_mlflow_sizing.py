"""What one MLflow worker holds, measured on the real images: PostgreSQL connections (the pool
settings) and SFTP sessions. The deploy targets' sizing checks count with these numbers
(images/contract.yaml, sizing)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from mlopskit.contract import load_contract
from mlopskit.versions import ImageSet

from tests.images.conftest import Postgres, Sftp, start_mlflow
from tests.support.docker import Container, Sandbox, new_secret

pytestmark = pytest.mark.docker

SIZING = load_contract().sizing
WORKERS = 1
# The smallest pools the contract allows: 2 per engine, no overflow, so one request at a time.
POOL_SIZE, MAX_OVERFLOW = 2, 0
FROM_SECRET = 'PGPASSWORD="$(cat "$POSTGRESQL_PASSWORD_FILE")" exec "$@"'


def mlflow_connections(postgres: Postgres) -> int:
    """Connections of the application role (MLflow's) to both databases, from pg_stat_activity."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'mlflow'"
    out = postgres.container.exec(
        "sh", "-c", FROM_SECRET, "sh",
        "psql", "-qAtX", "-U", "postgres", "-d", "postgres", "-c", sql,
    )  # fmt: skip
    return int(out.strip())


@pytest.fixture(scope="module")
def server(
    sandbox: Sandbox,
    images: ImageSet,
    postgres: Postgres,
    sftp: Sftp,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Container, tuple[str, str]]:
    env = {
        "MLFLOW_WORKERS": str(WORKERS),
        "MLFLOW_DB_POOL_SIZE": str(POOL_SIZE),
        "MLFLOW_DB_MAX_OVERFLOW": str(MAX_OVERFLOW),
    }
    tmp = tmp_path_factory.mktemp("mlflow-sizing")
    server = start_mlflow(sandbox, images, postgres, sftp, tmp, env)
    return server.container, server.auth


def test_pool_settings_cap_the_database_connections_under_load(
    server: tuple[Container, tuple[str, str]], postgres: Postgres
) -> None:
    container, auth = server
    url = f"http://127.0.0.1:{container.host_port(5000)}"
    # Stock MLflow (pool 5 + overflow 10) reached 42 connections here with one worker; with
    # pool 2 + overflow 0 (an overflow MLflow alone would drop) the three stores' pools hold 6,
    # plus the server process's one per store.
    limit = SIZING.db_connections(1, WORKERS, POOL_SIZE, MAX_OVERFLOW)
    limit -= SIZING.db_reserved_connections
    assert limit == 8
    calls = [
        ("POST", "/api/2.0/mlflow/experiments/search", {"max_results": 50}),
        ("GET", "/api/2.0/mlflow/registered-models/search", None),
        ("POST", "/api/2.0/mlflow/experiments/create", None),
    ]

    def request(index: int) -> int:
        method, path, body = calls[index % len(calls)]
        if path.endswith("/create"):
            body = {"name": f"sizing-{index}-{new_secret(6)}"}
        response = requests.request(method, url + path, json=body, auth=auth, timeout=120)
        return response.status_code

    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(mlflow_connections(postgres))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = list(pool.map(request, range(300)))
    finally:
        done.set()
        sampler.join()
    samples.append(mlflow_connections(postgres))
    assert set(statuses) == {200}, statuses
    assert len(samples) >= 5
    # The three stores of the worker are in use (not an idle server), and never more than pools.
    assert max(samples) >= 3, samples
    assert max(samples) <= limit, samples


def test_concurrent_writes_never_wait_for_a_full_pool(
    server: tuple[Container, tuple[str, str]],
) -> None:
    """MLflow's log_batch holds a session while it opens a second one of the same engine. With
    more concurrent writers than the pool holds, each holds one connection and waits for another
    until the pool timeout (30 s), then fails: 16 writers got 0.08 requests/s from pool 2 + 0.
    The image runs at most pool + overflow - 1 requests per worker, so every write succeeds."""
    container, auth = server
    url = f"http://127.0.0.1:{container.host_port(5000)}/api/2.0/mlflow"
    writers, batches = 16, 4

    def post(path: str, body: dict[str, object]) -> requests.Response:
        return requests.post(f"{url}/{path}", json=body, auth=auth, timeout=120)

    experiment = post("experiments/create", {"name": f"nested-{new_secret(6)}"})
    experiment_id = experiment.json()["experiment_id"]
    runs = [
        post("runs/create", {"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
        for _ in range(writers)
    ]

    def write(index: int) -> str:
        run_id, batch = runs[index % writers], index // writers
        metrics = [
            {"key": f"m{key}", "value": batch, "timestamp": 0, "step": batch} for key in range(20)
        ]
        params = [{"key": f"p{batch}-{key}", "value": str(key)} for key in range(5)]
        body = {"run_id": run_id, "metrics": metrics, "params": params}
        response = post("runs/log-batch", body)
        return "ok" if response.status_code == 200 else f"{response.status_code} {response.text}"

    with ThreadPoolExecutor(max_workers=writers) as pool:
        results = list(pool.map(write, range(writers * batches)))
    failures = [result for result in results if result != "ok"]
    assert not failures, f"{len(failures)} of {len(results)} writes failed, e.g. {failures[0]}"
    for run_id in runs:
        data = requests.get(
            f"{url}/runs/get", params={"run_id": run_id}, auth=auth, timeout=60
        ).json()["run"]["data"]
        assert len(data["params"]) == 5 * batches
        assert {metric["value"] for metric in data["metrics"]} == {batches - 1}


def test_a_worker_opens_its_sftp_sessions_at_the_first_artifact_request(
    server: tuple[Container, tuple[str, str]], sftp: Sftp
) -> None:
    container, auth = server
    url = f"http://127.0.0.1:{container.host_port(5000)}"
    response = requests.get(
        f"{url}/api/2.0/mlflow-artifacts/artifacts", params={"path": ""}, auth=auth, timeout=60
    )
    assert response.status_code == 200, response.text
    cpus = int(container.exec("python3", "-c", "import os; print(os.cpu_count())").strip())
    # MLflow's sftp:// store: min(2 x CPUs, 20) connections at once, each one session.
    expected = WORKERS * min(2 * cpus, 20)
    assert expected <= WORKERS * SIZING.sftp_sessions_per_worker
    # Each pysftp connection is an SSH login (sshd's [priv] and session processes); its
    # sftp-server starts at the connection's first use, so the third process comes with load.
    processes = sftp.container.exec("ps", "-eo", "args").splitlines()
    logins = [line for line in processes if line.startswith("sshd: mlops [priv]")]
    servers = [line for line in processes if line.startswith("sftp-server")]
    assert len(logins) == expected, processes
    assert 1 <= len(servers) <= expected, processes
    session_processes = [line for line in processes if line.startswith(("sshd: mlops", "sftp-"))]
    assert len(session_processes) <= expected * SIZING.sftp_processes_per_session, processes


def test_mlflow_refuses_its_own_pool_variables(sandbox: Sandbox, images: ImageSet) -> None:
    result = sandbox.run_to_exit(
        images.ref("mlflow"),
        env={"MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "0"},
        tmpfs=["/tmp"],
    )
    assert result.returncode == 78, result.stderr
    assert "set MLFLOW_DB_MAX_OVERFLOW instead" in result.stderr


def test_readme_documents_the_numbers() -> None:
    readme = (Path(__file__).resolve().parents[2] / "images" / "README.md").read_text()
    assert "MLFLOW_DB_POOL_SIZE" in readme
    assert "MLFLOW_DB_MAX_OVERFLOW" in readme
