"""The SFTP image: keys only, SFTP only, stable host keys, several users' keys."""

from __future__ import annotations

import io

import paramiko
import pytest

from tests.images.conftest import Sftp
from tests.support.docker import Sandbox, assert_config_error
from tests.support.keys import generate_keypair, sftp_session

pytestmark = pytest.mark.docker


def served_host_key(port: int) -> str:
    """The base64 ed25519 host key the server presents."""
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.get_security_options().key_types = ["ssh-ed25519"]
    try:
        transport.start_client(timeout=10)
        return transport.get_remote_server_key().get_base64()
    finally:
        transport.close()


def test_runs_as_the_assigned_non_root_uid(sftp: Sftp) -> None:
    assert sftp.container.exec("id", "-u").strip() == str(sftp.container.uid)
    processes = sftp.container.exec("ps", "-eo", "uid=,comm=").split("\n")
    assert all(line.split()[0] != "0" for line in processes if line.strip())


def test_every_authorized_key_gets_in_and_sees_the_data_directories(sftp: Sftp) -> None:
    for user in (*sftp.users, sftp.mlflow_key):
        with sftp_session(sftp.port, "mlops", user.private) as session:
            assert {"artifacts", "dvc"} <= set(session.listdir("."))


def test_upload_rename_and_download_like_dvc(sftp: Sftp) -> None:
    payload = b"dataset bytes\n" * 1000
    with sftp_session(sftp.port, "mlops", sftp.users[0].private) as session:
        session.mkdir("/data/dvc/ab")
        session.putfo(io.BytesIO(payload), "/data/dvc/ab/cdef.tmp")
        session.posix_rename("/data/dvc/ab/cdef.tmp", "/data/dvc/ab/cdef")
    with sftp_session(sftp.port, "mlops", sftp.users[1].private) as session:
        buffer = io.BytesIO()
        session.getfo("/data/dvc/ab/cdef", buffer)
    assert buffer.getvalue() == payload


def test_unknown_key_is_rejected(sftp: Sftp, tmp_path) -> None:
    stranger = generate_keypair(tmp_path / "stranger", "ed25519")
    with pytest.raises(paramiko.AuthenticationException):
        sftp_session(sftp.port, "mlops", stranger.private)


def test_password_authentication_is_off(sftp: Sftp) -> None:
    transport = paramiko.Transport(("127.0.0.1", sftp.port))
    try:
        transport.connect()
        with pytest.raises(paramiko.BadAuthenticationType) as excinfo:
            transport.auth_password("mlops", "anything")
        assert excinfo.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def ssh_client(sftp: Sftp) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - test sandbox
    client.connect(
        "127.0.0.1", port=sftp.port, username="mlops", key_filename=str(sftp.users[0].private),
        allow_agent=False, look_for_keys=False, timeout=10,
    )  # fmt: skip
    return client


def test_shell_commands_are_refused(sftp: Sftp) -> None:
    client = ssh_client(sftp)
    try:
        _, stdout, stderr = client.exec_command("id; echo shell-ran", timeout=20)
        output = stdout.read().decode() + stderr.read().decode()
        status = stdout.channel.recv_exit_status()
    finally:
        client.close()
    assert "shell-ran" not in output
    assert "uid=" not in output
    assert "allows sftp connections only" in output
    assert status != 0


def test_port_forwarding_is_refused(sftp: Sftp) -> None:
    client = ssh_client(sftp)
    try:
        with pytest.raises(paramiko.ChannelException):
            client.get_transport().open_channel("direct-tcpip", ("db", 5432), ("127.0.0.1", 0))
    finally:
        client.close()


def test_host_key_and_data_survive_a_restart(sftp: Sftp) -> None:
    before = sftp.host_public_key()
    with sftp_session(sftp.port, "mlops", sftp.users[0].private) as session:
        session.putfo(io.BytesIO(b"kept"), "/data/artifacts/kept.txt")
    sftp.container.restart()
    sftp.container.wait_healthy()
    assert sftp.host_public_key() == before
    assert served_host_key(sftp.port) == before.split()[1]
    with sftp_session(sftp.port, "mlops", sftp.users[0].private) as session:
        assert session.open("/data/artifacts/kept.txt").read() == b"kept"


def test_mounted_host_key_is_served(sandbox: Sandbox, images, sftp: Sftp, tmp_path) -> None:
    host_keys = tmp_path / "host-keys"
    host_keys.mkdir()
    host_key = generate_keypair(host_keys / "ssh_host_ed25519_key", "ed25519")
    host_keys.chmod(0o755)
    container = sandbox.run(
        "sftp-mounted-key",
        images.ref("sftp"),
        mounts=[
            f"{sandbox.volume('sftp-mounted-key')}:/data",
            f"{sftp.keys_dir}:/etc/sftp/authorized_keys:ro",
            f"{host_keys}:/etc/sftp/host-keys:ro",
        ],
        publish=[2222],
    )
    container.wait_healthy()
    assert served_host_key(container.host_port(2222)) == host_key.public_line.split()[1]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SFTP_AUTHORIZED_KEYS=/etc/sftp/authorized_keys does not exist"),
        ({"SFTP_USERNAME": "Root!"}, "SFTP_USERNAME='Root!' must match"),
        ({"SFTP_PORT": "22"}, "SFTP_PORT='22' must be a port number from 1024"),
    ],
)
def test_bad_configuration_fails_at_once_with_one_line(
    sandbox: Sandbox, images, env: dict[str, str], message: str
) -> None:
    result = sandbox.run_to_exit(images.ref("sftp"), env=env, tmpfs=["/data"])
    assert_config_error(result, message)
