"""SSH key pairs and SFTP sessions for tests (paramiko, as DVC's and MLflow's stacks use)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import paramiko


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public_line: str


def generate_keypair(path: Path, key_type: str) -> KeyPair:
    """ssh-keygen a key pair; the private key file is readable by a container's arbitrary UID."""
    args = ["ssh-keygen", "-q", "-N", "", "-C", path.name, "-f", str(path), "-t", key_type]
    if key_type == "rsa":
        args += ["-b", "3072"]
    subprocess.run(args, check=True)
    path.chmod(0o644)
    return KeyPair(path, Path(f"{path}.pub").read_text().strip())


def sftp_session(
    port: int, username: str, key: Path, host: str = "127.0.0.1"
) -> paramiko.SFTPClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - test sandbox
    client.connect(
        host, port=port, username=username, key_filename=str(key),
        allow_agent=False, look_for_keys=False, timeout=10,
    )  # fmt: skip
    sftp = client.open_sftp()
    sftp.ssh_client = client  # type: ignore[attr-defined] - keep the transport alive
    return sftp
