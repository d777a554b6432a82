"""TLS between MLflow and PostgreSQL (server certificate from mounted files, `verify-full` with a
mounted CA) and MLflow's read replica, with the real images and a throwaway CA."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import requests

from tests.images.conftest import Postgres, start_postgres
from tests.support.docker import Container, Sandbox, assert_config_error, new_secret, secret_dir
from tests.support.tls import new_ca

pytestmark = pytest.mark.docker

# The TLS server's names on the network: the certificate names the first two; the third
# reaches the same server under a name the certificate does not hold.
DB = "db-tls"
REPLICA = "db-tls-ro"
UNNAMED = "db-tls-unnamed"
CA_MOUNT = "/etc/mlflow/db-ca"


@dataclass
class Pki:
    ca: Path  # the CA MLflow trusts
    server: Path  # tls.crt and tls.key signed by it, for DB and REPLICA (and 127.0.0.1)
    attacker_ca: Path  # another CA
    attacker: Path  # tls.crt and tls.key for the same names and db-evil, from the attacker's CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    tmp.chmod(0o755)
    trusted, attacker = new_ca("mlops-kit test CA"), new_ca("attacker CA")
    (tmp / "trusted").mkdir(mode=0o755)
    (tmp / "attacker-ca").mkdir(mode=0o755)
    trusted.issue_server(tmp / "server", DB, REPLICA, "127.0.0.1")
    # The attacker's certificate holds every name MLflow may ask for: only the CA tells.
    attacker.issue_server(tmp / "attacker", DB, REPLICA, "db-evil", "127.0.0.1")
    return Pki(
        ca=trusted.write(tmp / "trusted" / "ca.crt").parent,
        server=tmp / "server",
        attacker_ca=attacker.write(tmp / "attacker-ca" / "ca.crt").parent,
        attacker=tmp / "attacker",
    )


TLS_ENV = {
    "POSTGRESQL_TLS_CERT_FILE": "/etc/postgres-tls/tls.crt",
    "POSTGRESQL_TLS_KEY_FILE": "/etc/postgres-tls/tls.key",
}


@pytest.fixture(scope="module")
def tls_postgres(
    sandbox: Sandbox, images, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Postgres:
    return start_postgres(
        sandbox, images, tmp_path_factory.mktemp("pg-tls"), DB,
        env=TLS_ENV, mounts=(f"{pki.server}:/etc/postgres-tls:ro",), aliases=(REPLICA, UNNAMED),
    )  # fmt: skip


def connect(pg: Postgres, **tls: str):
    return psycopg2.connect(
        host="127.0.0.1", port=pg.port, dbname="mlflow", user="mlflow",
        password=pg.secrets["app"], connect_timeout=5, **tls,
    )  # fmt: skip


# ---------- the PostgreSQL image serves TLS ----------


def test_postgres_serves_tls_with_the_mounted_certificate(tls_postgres: Postgres, pki: Pki) -> None:
    conn = connect(tls_postgres, sslmode="verify-full", sslrootcert=str(pki.ca / "ca.crt"))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        ssl, version = cur.fetchone()
    conn.close()
    assert ssl is True
    assert version in {"TLSv1.2", "TLSv1.3"}
    assert "(TLS only)" in tls_postgres.container.logs()


def test_postgres_with_tls_refuses_unencrypted_connections(tls_postgres: Postgres) -> None:
    with pytest.raises(psycopg2.OperationalError, match=r"no pg_hba\.conf entry.*no encryption"):
        connect(tls_postgres, sslmode="disable")


def test_the_private_key_copy_is_the_servers_own(tls_postgres: Postgres) -> None:
    listing = tls_postgres.container.exec("stat", "-c", "%a %u", "/tmp/postgresql/tls/server.key")
    assert listing.split() == ["600", str(tls_postgres.container.uid)]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"POSTGRESQL_TLS_CERT_FILE": "/etc/postgres-tls/tls.crt"},
            "POSTGRESQL_TLS_CERT_FILE and POSTGRESQL_TLS_KEY_FILE go together",
        ),
        (
            {**TLS_ENV, "POSTGRESQL_TLS_KEY_FILE": "/etc/postgres-tls/missing.key"},
            "POSTGRESQL_TLS_KEY_FILE=/etc/postgres-tls/missing.key is not a file UID",
        ),
        (
            {**TLS_ENV, "POSTGRESQL_TLS_CERT_FILE": "/etc/postgres-tls/tls.key"},
            "POSTGRESQL_TLS_CERT_FILE=/etc/postgres-tls/tls.key holds no PEM certificate",
        ),
    ],
)
def test_bad_tls_files_stop_postgres_at_once(
    sandbox: Sandbox, images, pki: Pki, env: dict[str, str], message: str
) -> None:
    result = sandbox.run_to_exit(
        images.ref("postgresql"),
        env={"POSTGRESQL_PASSWORD": "x", "POSTGRESQL_APP_PASSWORD": "y", **env},
        mounts=[
            f"{sandbox.volume(f'bad-tls-{uuid.uuid4().hex[:6]}')}:/var/lib/postgresql/data",
            f"{pki.server}:/etc/postgres-tls:ro",
        ],
    )
    assert_config_error(result, message)


# ---------- MLflow: verify-full with a mounted CA, and a read replica ----------


def mlflow_env(pg_host: str, **extra: str) -> dict[str, str]:
    return {
        "MLFLOW_DB_HOST": pg_host,
        "MLFLOW_DB_PASSWORD_FILE": "/run/secrets/mlflow/db",
        "MLFLOW_DB_SSLMODE": "verify-full",
        "MLFLOW_DB_SSLROOTCERT": f"{CA_MOUNT}/ca.crt",
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": "/run/secrets/mlflow/admin",
        "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": "/run/secrets/mlflow/flask",
        "MLFLOW_ARTIFACTS_DESTINATION": "file:///tmp/mlflow/artifacts",
        **extra,
    }


@dataclass
class TlsMlflow:
    container: Container
    auth: tuple[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.container.host_port(5000)}"

    def api(self, method: str, path: str, **json: object) -> dict:
        response = requests.request(
            method, f"{self.url}/api/2.0/mlflow/{path}", auth=self.auth, timeout=30,
            **({"json": json} if method == "POST" else {"params": json}),
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def secrets(tls_postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """MLflow's secret files (mounted at /run/secrets/mlflow): their values and their "dir"."""
    values = {"db": tls_postgres.secrets["app"], "admin": new_secret(), "flask": new_secret()}
    directory = secret_dir(tmp_path_factory.mktemp("mlflow-tls") / "secrets", values)
    return {**values, "dir": str(directory)}


@pytest.fixture(scope="module")
def tls_mlflow(sandbox: Sandbox, images, pki: Pki, secrets: dict[str, str]) -> TlsMlflow:
    """verify-full against the TLS server, reads through a replica (a second name of it)."""
    container = sandbox.run(
        "mlflow-tls",
        images.ref("mlflow"),
        env=mlflow_env(DB, MLFLOW_DB_UPGRADE="true", MLFLOW_DB_READ_REPLICA_HOST=REPLICA),
        mounts=[f"{secrets['dir']}:/run/secrets/mlflow:ro", f"{pki.ca}:{CA_MOUNT}:ro"],
        publish=[5000],
    )
    container.wait_healthy(timeout=300)
    return TlsMlflow(container, ("admin", secrets["admin"]))


def test_mlflow_verifies_the_server_and_writes_a_run(
    tls_mlflow: TlsMlflow, tls_postgres: Postgres, pki: Pki
) -> None:
    experiment = tls_mlflow.api("POST", "experiments/create", name=f"tls-{uuid.uuid4().hex[:6]}")
    run = tls_mlflow.api("POST", "runs/create", experiment_id=experiment["experiment_id"])
    run_id = run["run"]["info"]["run_id"]
    tls_mlflow.api("POST", "runs/log-metric", run_id=run_id, key="rmse", value=0.25, timestamp=1)
    conn = connect(tls_postgres, sslmode="verify-full", sslrootcert=str(pki.ca / "ca.crt"))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM metrics WHERE run_uuid = %s AND key = 'rmse'", (run_id,))
        assert cur.fetchall() == [(0.25,)]
        # Every session of the app role is encrypted (the tracking and the auth database).
        cur.execute(
            "SELECT a.datname, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
            "WHERE a.usename = 'mlflow' AND a.pid <> pg_backend_pid()"
        )
        sessions = cur.fetchall()
    conn.close()
    assert sessions, "MLflow holds no database session"
    assert {ssl for _, ssl in sessions} == {True}


def test_mlflow_reads_through_the_read_replica(tls_mlflow: TlsMlflow) -> None:
    logs = tls_mlflow.container.logs()
    assert f"read replica at {REPLICA}:5432 accepts connections" in logs
    name = f"replica-{uuid.uuid4().hex[:6]}"
    experiment_id = tls_mlflow.api("POST", "experiments/create", name=name)["experiment_id"]
    run_id = tls_mlflow.api("POST", "runs/create", experiment_id=experiment_id)["run"]["info"][
        "run_id"
    ]
    assert tls_mlflow.api("GET", "experiments/get-by-name", experiment_name=name)
    found = tls_mlflow.api("POST", "runs/search", experiment_ids=[experiment_id])
    assert [r["info"]["run_id"] for r in found["runs"]] == [run_id]


def test_no_database_secret_in_the_process_list(
    tls_mlflow: TlsMlflow, secrets: dict[str, str]
) -> None:
    processes = tls_mlflow.container.exec("ps", "-eo", "args")
    assert secrets["db"] not in processes
    assert REPLICA not in processes, "the replica URI must travel in the environment"


@pytest.mark.parametrize(
    ("ca", "host", "replica", "message"),
    [
        # The server presents a certificate the mounted CA never signed.
        ("attacker_ca", DB, "", f"database at {DB}:5432 refused: its TLS certificate"),
        # An attacker's server answers under the database's name with its own CA's certificate.
        ("ca", "db-evil", "", "database at db-evil:5432 refused: its TLS certificate"),
        # A name the (valid) certificate does not hold: verify-full checks it.
        ("ca", UNNAMED, "", f"database at {UNNAMED}:5432 refused: its TLS certificate"),
        # The replica is checked the same way.
        ("ca", DB, UNNAMED, f"read replica at {UNNAMED}:5432 refused: its TLS certificate"),
    ],
)
def test_mlflow_refuses_a_server_it_cannot_verify(
    sandbox: Sandbox,
    images,
    pki: Pki,
    secrets: dict[str, str],
    tls_postgres: Postgres,
    evil_postgres: Postgres,
    ca: str,
    host: str,
    replica: str,
    message: str,
) -> None:
    result = sandbox.run_to_exit(
        images.ref("mlflow"),
        env=mlflow_env(host, MLFLOW_DB_READ_REPLICA_HOST=replica, MLFLOW_DB_WAIT_SECONDS="30"),
        mounts=[f"{secrets['dir']}:/run/secrets/mlflow:ro", f"{getattr(pki, ca)}:{CA_MOUNT}:ro"],
        timeout=120,
    )
    # Exit 78 with one error line (after the primary's "accepts connections" in the replica case).
    assert result.returncode == 78, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert "MLFLOW_DB_SSLROOTCERT" in errors[0]
    assert "certificate verify failed" in errors[0] or "does not match host name" in errors[0]
    assert secrets["db"] not in result.stderr


@pytest.fixture(scope="module")
def evil_postgres(
    sandbox: Sandbox, images, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Postgres:
    """A server with the right names and the attacker's certificate."""
    return start_postgres(
        sandbox, images, tmp_path_factory.mktemp("pg-evil"), "db-evil",
        env=TLS_ENV, mounts=(f"{pki.attacker}:/etc/postgres-tls:ro",),
    )  # fmt: skip


def test_mlflow_without_a_ca_names_the_setting(
    sandbox: Sandbox, images, secrets: dict[str, str]
) -> None:
    env = mlflow_env(DB)
    del env["MLFLOW_DB_SSLROOTCERT"]
    result = sandbox.run_to_exit(
        images.ref("mlflow"), env=env, mounts=[f"{secrets['dir']}:/run/secrets/mlflow:ro"]
    )
    assert_config_error(result, "MLFLOW_DB_SSLMODE=verify-full checks the server's certificate")
    assert "MLFLOW_DB_SSLROOTCERT" in result.stderr


def test_mlflow_with_an_unreadable_ca_names_the_path(
    sandbox: Sandbox, images, secrets: dict[str, str]
) -> None:
    result = sandbox.run_to_exit(
        images.ref("mlflow"),
        env=mlflow_env(DB),
        mounts=[f"{secrets['dir']}:/run/secrets/mlflow:ro"],
    )
    assert_config_error(result, f"MLFLOW_DB_SSLROOTCERT={CA_MOUNT}/ca.crt cannot be read")
