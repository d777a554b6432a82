"""The MLflow image serving HTTPS itself (MLFLOW_TLS_CERT_FILE/KEY_FILE): the hop from an
ingress controller or router, or from a client, is encrypted up to the server process."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient
from mlopskit.versions import ImageSet

from tests.images.conftest import Mlflow, Postgres, server_env, tracking_credentials
from tests.support.docker import Sandbox, assert_config_error, new_secret, secret_dir
from tests.support.tls import new_ca

pytestmark = pytest.mark.docker

TLS_MOUNT = "/etc/mlflow/tls"
TLS_ENV = {
    "MLFLOW_TLS_CERT_FILE": f"{TLS_MOUNT}/tls.crt",
    "MLFLOW_TLS_KEY_FILE": f"{TLS_MOUNT}/tls.key",
}


@dataclass
class HttpsServer:
    server: Mlflow
    ca_file: Path

    @property
    def url(self) -> str:
        return self.server.url.replace("http://", "https://", 1)


@pytest.fixture(scope="module")
def https_server(
    sandbox: Sandbox,
    images: ImageSet,
    postgres: Postgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> HttpsServer:
    tmp = tmp_path_factory.mktemp("mlflow-https")
    ca = new_ca("mlflow-https-tests")
    tls_dir = tmp / "tls"
    ca.issue_server(tls_dir, "mlflow.example.com", "127.0.0.1")
    values = {"db": postgres.secrets["app"], "admin": new_secret(), "flask": new_secret()}
    container = sandbox.run(
        "mlflow-https",
        images.ref("mlflow"),
        env={
            **server_env("db"),
            "MLFLOW_ARTIFACTS_DESTINATION": "file:///tmp/mlflow/artifacts",
            "MLFLOW_ALLOWED_HOSTS": "mlflow.example.com",
            **TLS_ENV,
        },
        mounts=[
            f"{secret_dir(tmp / 'secrets', values)}:/run/secrets/mlflow:ro",
            f"{tls_dir}:{TLS_MOUNT}:ro",
        ],
        publish=[5000],
    )
    # Healthy means the image's health check reached /health over HTTPS.
    container.wait_healthy()
    return HttpsServer(Mlflow(container, values), ca.write(tmp / "ca.crt"))


@pytest.fixture
def client(https_server: HttpsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    # The stock client's own setting for a private CA.
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(https_server.ca_file))
    with tracking_credentials(https_server.url, *https_server.server.auth):
        yield MlflowClient(https_server.url)


def test_the_stock_client_logs_a_run_over_verified_https(client: MlflowClient) -> None:
    mlflow.set_experiment(f"https-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "0.5")
        mlflow.log_text("hello", "notes.txt")
    assert client.get_run(run.info.run_id).data.params == {"alpha": "0.5"}
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt") == "hello"


def test_the_server_presents_the_mounted_certificate(https_server: HttpsServer) -> None:
    port = https_server.server.container.host_port(5000)
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    expected = (Path(https_server.ca_file).parent / "tls" / "tls.crt").read_text()
    assert ssl.PEM_cert_to_DER_cert(pem) == ssl.PEM_cert_to_DER_cert(expected)
    answer = requests.get(f"{https_server.url}/health", verify=https_server.ca_file, timeout=10)
    assert answer.status_code == 200


def test_plain_http_gets_no_answer(https_server: HttpsServer) -> None:
    """Nothing is served unencrypted on the port: a plain request fails or gets no page."""
    search = f"{https_server.server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        answer = requests.get(search, auth=https_server.server.auth, timeout=10)
    except requests.ConnectionError:
        return
    assert answer.status_code != 200, answer.text


def test_a_client_that_does_not_trust_the_ca_is_refused(https_server: HttpsServer) -> None:
    """Without the CA a client cannot tell the server from an impostor: it must not talk."""
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{https_server.url}/health", timeout=10)


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (
            {"MLFLOW_TLS_CERT_FILE": "/etc/mlflow/tls/tls.crt"},
            "MLFLOW_TLS_CERT_FILE is set but MLFLOW_TLS_KEY_FILE is not; set both",
        ),
        (TLS_ENV, f"MLFLOW_TLS_CERT_FILE={TLS_MOUNT}/tls.crt is not readable; mount"),
    ],
)
def test_half_or_missing_tls_files_stop_the_server(
    sandbox: Sandbox, images: ImageSet, tls: dict[str, str], message: str
) -> None:
    env = {
        "MLFLOW_DB_HOST": "db",
        "MLFLOW_DB_PASSWORD": "x",
        "MLFLOW_AUTH_ENABLED": "false",
        "MLFLOW_ARTIFACTS_DESTINATION": "file:///tmp/a",
        **tls,
    }
    assert_config_error(sandbox.run_to_exit(images.ref("mlflow"), env=env), message)
