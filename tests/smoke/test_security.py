"""Negative checks: no access without credentials, unknown keys rejected, no shell on SFTP,
only the names the server is reached by are accepted as Host headers, and a foreign web page
cannot act with a person's credentials (CORS)."""

from __future__ import annotations

import subprocess
import urllib.parse

import paramiko
import pytest
import requests

from tests.smoke.smoke_support import connect_sftp
from tests.smoke.stack import Stack
from tests.support.cors import HOSTILE_ORIGINS, acceptance_problems, refusal_problems

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def test_unauthenticated_rest_call_gets_401(client_env):
    response = requests.get(client_env["MLFLOW_TRACKING_URI"] + SEARCH, timeout=30)
    assert response.status_code == 401


def test_wrong_password_gets_401(client_env):
    response = requests.get(
        client_env["MLFLOW_TRACKING_URI"] + SEARCH,
        auth=(client_env["MLFLOW_TRACKING_USERNAME"], "not-the-password"),
        timeout=30,
    )
    assert response.status_code == 401


@pytest.mark.parametrize("host_name", ["127.0.0.1", "localhost"])
def test_every_local_name_is_an_allowed_host(client_env, host_name):
    uri = urllib.parse.urlsplit(client_env["MLFLOW_TRACKING_URI"])
    auth = (client_env["MLFLOW_TRACKING_USERNAME"], client_env["MLFLOW_TRACKING_PASSWORD"])
    response = requests.get(
        client_env["MLFLOW_TRACKING_URI"] + SEARCH,
        auth=auth,
        headers={"Host": f"{host_name}:{uri.port}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text[:200]


def test_foreign_host_header_is_refused(client_env):
    auth = (client_env["MLFLOW_TRACKING_USERNAME"], client_env["MLFLOW_TRACKING_PASSWORD"])
    response = requests.get(
        client_env["MLFLOW_TRACKING_URI"] + SEARCH,
        auth=auth,
        headers={"Host": "attacker.example.com"},
        timeout=30,
    )
    assert response.status_code in {400, 403}


def test_unknown_sftp_key_is_rejected(client_env):
    stranger = paramiko.RSAKey.generate(2048)
    with pytest.raises(paramiko.AuthenticationException):
        connect_sftp(client_env, stranger)


@pytest.mark.sftp_login
def test_sftp_gives_no_shell(client_env):
    client = connect_sftp(client_env)
    try:
        # Every key has a forced command: whatever is asked for, only sftp-server answers.
        stdin, stdout, _ = client.exec_command("echo shell-$((6*7))", timeout=15)
        stdin.channel.shutdown_write()
        output = stdout.read()
        assert b"shell-42" not in output
        channel = client.get_transport().open_session(timeout=15)
        with pytest.raises(paramiko.SSHException):
            channel.get_pty()
    finally:
        client.close()


@pytest.mark.sftp_login
def test_sftp_refuses_port_forwarding(client_env):
    client = connect_sftp(client_env)
    try:
        with pytest.raises(paramiko.ChannelException):
            client.get_transport().open_channel(
                "direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 0), timeout=15
            )
    finally:
        client.close()


# MLFLOW_CORS_ALLOWED_ORIGINS as the running MLflow container has it (docker exec / kubectl exec).
READ_ORIGINS = "import os; print(os.environ.get('MLFLOW_CORS_ALLOWED_ORIGINS', ''))"


@pytest.fixture(scope="module")
def cors_allowed_origins(stack: Stack) -> list[str]:
    """The origins the deployed MLflow lets in: mlops_docker_mlflow_cors_allowed_origins on
    Docker, mlflow.corsAllowedOrigins on Kubernetes."""
    argv = [*stack.exec_argv("mlflow"), "python", "-c", READ_ORIGINS]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{argv} exited {result.returncode}: {result.stderr}"
    return [origin.strip() for origin in result.stdout.strip().split(",") if origin.strip()]


def person_auth(client_env) -> tuple[str, str]:
    return (client_env["MLFLOW_TRACKING_USERNAME"], client_env["MLFLOW_TRACKING_PASSWORD"])


@pytest.mark.parametrize("origin", HOSTILE_ORIGINS)
def test_a_foreign_page_cannot_act_with_the_persons_credentials(
    client_env, cors_allowed_origins, run_id_tag, origin
):
    """A page of https://evil.example, or one on the person's own machine (localhost, which
    MLflow alone lets in), in the person's browser, which attaches their MLflow credentials:
    creating an experiment is refused and creates nothing; neither the preflight nor any answer
    lets the page read it (tests/support/cors.py)."""
    assert origin not in cors_allowed_origins
    if "*" in cors_allowed_origins:
        pytest.skip("MLFLOW_CORS_ALLOWED_ORIGINS is *: MLflow lets every origin in, uncredentialed")
    base = client_env["MLFLOW_TRACKING_URI"].rstrip("/")
    name = f"smoke-cors-attack-{run_id_tag}-{HOSTILE_ORIGINS.index(origin)}"
    problems = refusal_problems(base, person_auth(client_env), name, origin)
    assert not problems, "\n".join(problems)


def test_an_allowed_origin_gets_credentialed_cors(
    client_env, cors_allowed_origins, run_id_tag, admin
):
    """The same request from the first configured origin works, and its page may read the
    answer. The admin deletes the experiment again."""
    exact = [origin for origin in cors_allowed_origins if "*" not in origin]
    if not exact:
        pytest.skip(
            "no CORS origin is configured (mlops_docker_mlflow_cors_allowed_origins, "
            "mlflow.corsAllowedOrigins): nothing to accept"
        )
    base = client_env["MLFLOW_TRACKING_URI"].rstrip("/")
    name = f"smoke-cors-allowed-{run_id_tag}"
    admin_auth = (admin["MLFLOW_TRACKING_USERNAME"], admin["MLFLOW_TRACKING_PASSWORD"])
    problems = acceptance_problems(base, person_auth(client_env), name, exact[0], admin_auth)
    assert not problems, "\n".join(problems)
