"""Negative checks: no access without credentials, unknown keys rejected, no shell on SFTP,
and only the names the server is reached by are accepted as Host headers."""

from __future__ import annotations

import urllib.parse

import paramiko
import pytest
import requests

from tests.smoke.smoke_support import connect_sftp

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


def test_sftp_refuses_port_forwarding(client_env):
    client = connect_sftp(client_env)
    try:
        with pytest.raises(paramiko.ChannelException):
            client.get_transport().open_channel(
                "direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 0), timeout=15
            )
    finally:
        client.close()
