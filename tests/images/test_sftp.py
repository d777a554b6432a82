"""The SFTP image: keys only, SFTP only, stable host keys, and every key confined to its area.

The attacks are made the way a hostile key holder would: a real SFTP client (paramiko) and the
stock OpenSSH `sftp` and `ssh` commands, against the real image run hardened under a random UID.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import paramiko
import pytest

from tests.images.conftest import Sftp, start_sftp, write_access_dir
from tests.support.docker import Sandbox, assert_config_error
from tests.support.keys import generate_keypair, sftp_session

pytestmark = pytest.mark.docker

# Paths holding what no session may read: sshd's generated config and authorized_keys, the
# private copies of the host keys, the generated host keys on the volume, the mounted access
# list, and the secrets of other processes.
SECRET_FILES = [
    "/tmp/sftp/sshd_config",
    "/tmp/sftp/home/.ssh/authorized_keys",
    "/tmp/sftp/host-keys/ssh_host_ed25519_key",
    "/tmp/sftp/host-keys/ssh_host_rsa_key",
    "/data/.host-keys/ssh_host_ed25519_key",
    "/data/.host-keys/ssh_host_rsa_key",
    "/etc/sftp/access/mlflow",
    "/proc/1/environ",
    "/proc/self/environ",
]
# Where no session may write (sshd's configuration, keys) or, for people, MLflow's area.
PROTECTED_TARGETS = [
    "/tmp/sftp/sshd_config",
    "/tmp/sftp/home/.ssh/authorized_keys",
    "/data/.host-keys/ssh_host_ed25519_key",
    "/data/artifacts/planted",
    "/data/planted",
    "/tmp/planted",
]
OUTSIDE_DIRECTORIES = ["/", "/data", "/data/.host-keys", "/tmp/sftp", "/etc", "/proc"]


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


def test_each_key_sees_its_own_area(sftp: Sftp) -> None:
    for key, area in (
        (sftp.writer, "/data/dvc"),
        (sftp.reader, "/data/dvc"),
        (sftp.mlflow_key, "/data/artifacts"),
    ):
        with sftp_session(sftp.port, "mlops", key.private) as session:
            assert session.normalize(".") == area
            session.listdir(area)


def test_upload_rename_and_download_like_dvc(sftp: Sftp) -> None:
    payload = b"dataset bytes\n" * 1000
    with sftp_session(sftp.port, "mlops", sftp.writer.private) as session:
        session.mkdir("/data/dvc/ab")
        session.putfo(io.BytesIO(payload), "/data/dvc/ab/cdef.tmp")
        session.posix_rename("/data/dvc/ab/cdef.tmp", "/data/dvc/ab/cdef")
    with sftp_session(sftp.port, "mlops", sftp.reader.private) as session:
        buffer = io.BytesIO()
        session.getfo("/data/dvc/ab/cdef", buffer)
    assert buffer.getvalue() == payload


ALL_KEYS = ["writer", "reader", "mlflow_key"]


@pytest.mark.parametrize("who", ALL_KEYS)
@pytest.mark.parametrize("path", SECRET_FILES)
def test_no_key_reads_secrets(sftp: Sftp, who: str, path: str) -> None:
    exists = sftp.container.exec("sh", "-c", f"test -e {path} && echo yes || echo no").strip()
    assert exists == "yes", f"{path} is not in the container, so this attack proves nothing"
    with (
        sftp_session(sftp.port, "mlops", getattr(sftp, who).private) as session,
        pytest.raises(PermissionError),
    ):
        session.open(path).read()


@pytest.mark.parametrize("who", ALL_KEYS)
@pytest.mark.parametrize("directory", OUTSIDE_DIRECTORIES)
def test_no_key_lists_outside_its_area(sftp: Sftp, who: str, directory: str) -> None:
    with (
        sftp_session(sftp.port, "mlops", getattr(sftp, who).private) as session,
        pytest.raises(PermissionError),
    ):
        session.listdir(directory)


@pytest.mark.parametrize(
    ("who", "target"),
    [
        (who, target)
        for who in ALL_KEYS
        for target in PROTECTED_TARGETS
        # MLflow's own area: its right to write there is a positive test elsewhere.
        if not (who == "mlflow_key" and target.startswith("/data/artifacts/"))
    ],
)
def test_no_key_writes_configuration_keys_or_foreign_areas(
    sftp: Sftp, who: str, target: str
) -> None:
    before = sftp.container.exec("sh", "-c", f"sha256sum {target} 2>/dev/null || true")
    with (
        sftp_session(sftp.port, "mlops", getattr(sftp, who).private) as session,
        pytest.raises(PermissionError),
    ):
        session.putfo(io.BytesIO(b"ssh-ed25519 AAAA attacker\n"), target)
    assert sftp.container.exec("sh", "-c", f"sha256sum {target} 2>/dev/null || true") == before


def test_people_cannot_touch_mlflow_artifacts(sftp: Sftp) -> None:
    with sftp_session(sftp.port, "mlops", sftp.mlflow_key.private) as session:
        session.putfo(io.BytesIO(b"model weights"), "/data/artifacts/model.bin")
    for key in (sftp.writer, sftp.reader):
        with sftp_session(sftp.port, "mlops", key.private) as session:
            for attack in (
                lambda s: s.open("/data/artifacts/model.bin").read(),
                lambda s: s.remove("/data/artifacts/model.bin"),
                lambda s: s.rename("/data/artifacts/model.bin", "/data/dvc/stolen.bin"),
                lambda s: s.mkdir("/data/artifacts/new"),
                lambda s: s.chmod("/data/artifacts", 0o777),
            ):
                with pytest.raises(PermissionError):
                    attack(session)
    assert sftp.container.exec("cat", "/data/artifacts/model.bin") == "model weights"


def test_mlflow_key_cannot_reach_the_dvc_area(sftp: Sftp) -> None:
    with sftp_session(sftp.port, "mlops", sftp.mlflow_key.private) as session:
        with pytest.raises(PermissionError):
            session.listdir("/data/dvc")
        with pytest.raises(PermissionError):
            session.putfo(io.BytesIO(b"x"), "/data/dvc/from-mlflow")


def test_read_only_key_cannot_change_anything(sftp: Sftp) -> None:
    with sftp_session(sftp.port, "mlops", sftp.writer.private) as session:
        session.putfo(io.BytesIO(b"kept"), "/data/dvc/ro-target")
        session.mkdir("/data/dvc/ro-dir")
    with sftp_session(sftp.port, "mlops", sftp.reader.private) as session:
        for attack in (
            lambda s: s.putfo(io.BytesIO(b"new"), "/data/dvc/ro-new"),
            lambda s: s.open("/data/dvc/ro-target", "w").write(b"overwritten"),
            lambda s: s.open("/data/dvc/ro-target", "a").write(b"appended"),
            lambda s: s.remove("/data/dvc/ro-target"),
            lambda s: s.rename("/data/dvc/ro-target", "/data/dvc/ro-renamed"),
            lambda s: s.posix_rename("/data/dvc/ro-target", "/data/dvc/ro-renamed"),
            lambda s: s.mkdir("/data/dvc/ro-mkdir"),
            lambda s: s.rmdir("/data/dvc/ro-dir"),
            lambda s: s.chmod("/data/dvc/ro-target", 0o777),
            lambda s: s.symlink("/data/dvc/ro-target", "/data/dvc/ro-link"),
        ):
            with pytest.raises((PermissionError, OSError)):
                attack(session)
        assert session.open("/data/dvc/ro-target").read() == b"kept"
    listing = sftp.container.exec("ls", "/data/dvc").split()
    assert "ro-target" in listing
    assert not {"ro-new", "ro-renamed", "ro-mkdir", "ro-link"} & set(listing)


def test_links_cannot_escape_the_area(sftp: Sftp) -> None:
    with sftp_session(sftp.port, "mlops", sftp.writer.private) as session:
        with pytest.raises(PermissionError):
            session.symlink("/data/.host-keys/ssh_host_ed25519_key", "/data/dvc/escape")
        with pytest.raises(OSError, match=r"denied|not supported|unsupported"):
            session._request(  # the raw hardlink@openssh.com extension
                paramiko.sftp.CMD_EXTENDED,
                "hardlink@openssh.com",
                "/data/.host-keys/ssh_host_ed25519_key",
                "/data/dvc/escape",
            )
    assert "escape" not in sftp.container.exec("ls", "/data/dvc").split()


def openssh(sftp: Sftp, key: Path, *command: str, batch: str | None = None) -> str:
    """The stock OpenSSH client, as a hostile user would use it."""
    private = key.with_name(key.name + ".0600")
    private.write_bytes(key.read_bytes())
    private.chmod(0o600)
    key = private
    options = [
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i", str(key),
    ]  # fmt: skip
    if batch is not None:
        args = ["sftp", *options, "-P", str(sftp.port), "-b", "-", "mlops@127.0.0.1"]
    else:
        args = ["ssh", *options, "-p", str(sftp.port), "mlops@127.0.0.1", *command]
    result = subprocess.run(
        args, input=batch or "", capture_output=True, text=True, timeout=60, check=False
    )
    return result.stdout + result.stderr


def test_stock_sftp_client_gets_no_host_key(sftp: Sftp, tmp_path: Path) -> None:
    stolen = tmp_path / "stolen"
    output = openssh(
        sftp,
        sftp.writer.private,
        batch=f"-get /data/.host-keys/ssh_host_ed25519_key {stolen}\n"
        f"-get /tmp/sftp/host-keys/ssh_host_rsa_key {stolen}\n-ls -la /tmp/sftp\n",
    )
    assert output.count("Permission denied") == 3, output
    assert not stolen.exists()


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
        "127.0.0.1", port=sftp.port, username="mlops", key_filename=str(sftp.writer.private),
        allow_agent=False, look_for_keys=False, timeout=10,
    )  # fmt: skip
    return client


def test_shell_commands_are_refused(sftp: Sftp) -> None:
    client = ssh_client(sftp)
    try:
        stdin, stdout, stderr = client.exec_command("id; echo shell-ran", timeout=20)
        stdin.channel.shutdown_write()  # the forced sftp-server ends at EOF
        output = stdout.read().decode() + stderr.read().decode()
        status = stdout.channel.recv_exit_status()
    finally:
        client.close()
    assert "shell-ran" not in output
    assert "uid=" not in output
    # The forced command runs instead: sftp-server, which does not speak shell.
    assert status != 0 or output == ""


def test_stock_ssh_command_runs_no_shell(sftp: Sftp) -> None:
    output = openssh(sftp, sftp.writer.private, "cat /tmp/sftp/sshd_config; echo shell-ran")
    assert "shell-ran" not in output
    assert "HostKey" not in output


def test_port_forwarding_is_refused(sftp: Sftp) -> None:
    client = ssh_client(sftp)
    try:
        with pytest.raises(paramiko.ChannelException):
            client.get_transport().open_channel("direct-tcpip", ("db", 5432), ("127.0.0.1", 0))
    finally:
        client.close()


def test_host_key_and_data_survive_a_restart(sftp: Sftp) -> None:
    before = sftp.host_public_key()
    with sftp_session(sftp.port, "mlops", sftp.writer.private) as session:
        session.putfo(io.BytesIO(b"kept"), "/data/dvc/kept.txt")
    sftp.container.restart()
    sftp.container.wait_healthy()
    assert sftp.host_public_key() == before
    assert served_host_key(sftp.port) == before.split()[1]
    with sftp_session(sftp.port, "mlops", sftp.writer.private) as session:
        assert session.open("/data/dvc/kept.txt").read() == b"kept"


def test_mounted_host_key_is_served(sandbox: Sandbox, images, sftp: Sftp, tmp_path) -> None:
    host_keys = tmp_path / "host-keys"
    host_keys.mkdir()
    host_key = generate_keypair(host_keys / "ssh_host_ed25519_key", "ed25519")
    host_keys.chmod(0o755)
    container = start_sftp(
        sandbox, images, "sftp-mounted-key", sftp.access_dir, f"{host_keys}:/etc/sftp/host-keys:ro"
    )
    assert served_host_key(container.host_port(2222)) == host_key.public_line.split()[1]


@pytest.mark.parametrize(
    ("access", "env", "message"),
    [
        (None, {}, "SFTP_ACCESS=/etc/sftp/access does not exist"),
        ("dvc rw KEY", {"SFTP_USERNAME": "Root!"}, "SFTP_USERNAME='Root!' must match"),
        ("dvc rw KEY", {"SFTP_PORT": "22"}, "SFTP_PORT='22' must be a port number from 1024"),
        ("models rw KEY", {}, "area 'models' is not one of SFTP_DIRECTORIES"),
        ("dvc admin KEY", {}, "mode 'admin' for area 'dvc' must be ro or rw"),
        ("dvc rw ssh-ed25519 notakey", {}, "the key for area 'dvc' is not a public key"),
        ("# nobody yet", {}, "holds no key"),
        ("dvc rw KEY\ndvc ro KEY", {}, "a key is listed twice for area 'dvc'"),
        ("dvc rw KEY", {"SFTP_DIRECTORIES": "dvc ../etc"}, "'../etc' must match"),
    ],
)
def test_bad_configuration_fails_at_once_with_one_line(
    sandbox: Sandbox,
    images,
    tmp_path: Path,
    access: str | None,
    env: dict[str, str],
    message: str,
) -> None:
    mounts = []
    if access is not None:
        key = generate_keypair(tmp_path / "k", "ed25519")
        access_file = tmp_path / "access"
        access_file.write_text(access.replace("KEY", key.public_line) + "\n")
        access_file.chmod(0o644)
        mounts.append(f"{access_file}:/etc/sftp/access:ro")
    result = sandbox.run_to_exit(images.ref("sftp"), env=env, tmpfs=["/data"], mounts=mounts)
    assert_config_error(result, message)


def test_a_new_key_file_grants_exactly_its_area(
    sandbox: Sandbox, images, sftp: Sftp, tmp_path: Path
) -> None:
    """The access list is the only source of rights: a reader of artifacts, added as a file."""
    auditor = generate_keypair(tmp_path / "auditor", "ed25519")
    access = write_access_dir(tmp_path / "access", {"auditor": ("artifacts", "ro", auditor)})
    container = start_sftp(sandbox, images, "sftp-auditor", access)
    container.exec("sh", "-c", "echo weights > /data/artifacts/m.bin")
    with sftp_session(container.host_port(2222), "mlops", auditor.private) as session:
        assert session.open("/data/artifacts/m.bin").read() == b"weights\n"
        with pytest.raises(PermissionError):
            session.listdir("/data/dvc")
        with pytest.raises(PermissionError):
            session.remove("/data/artifacts/m.bin")


def test_one_key_reaches_two_areas_each_with_its_own_mode(
    sandbox: Sandbox, images, tmp_path: Path
) -> None:
    """A person in direct artifact mode: the DVC remote read-only, the artifacts read-write."""
    person = generate_keypair(tmp_path / "person", "ed25519")
    access = tmp_path / "access"
    access.write_text(f"dvc ro {person.public_line}\nartifacts rw {person.public_line}\n")
    access.chmod(0o644)
    container = start_sftp(sandbox, images, "sftp-two-areas", access)
    container.exec("sh", "-c", "echo data > /data/dvc/d.csv")
    with sftp_session(container.host_port(2222), "mlops", person.private) as session:
        session.putfo(io.BytesIO(b"weights"), "/data/artifacts/m.bin")
        assert session.open("/data/artifacts/m.bin").read() == b"weights"
        assert session.open("/data/dvc/d.csv").read() == b"data\n"
        for attack in (
            lambda: session.putfo(io.BytesIO(b"x"), "/data/dvc/new.csv"),
            lambda: session.remove("/data/dvc/d.csv"),
            lambda: session.rename("/data/artifacts/m.bin", "/data/dvc/m.bin"),
            lambda: session.listdir("/data"),
        ):
            with pytest.raises(PermissionError):
                attack()
