"""Constants and small helpers shared by the smoke tests (importable, unlike conftest)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import paramiko

ARTIFACT_BYTES = 50 * 1024 * 1024
ALIAS = "champion"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def connect_sftp(
    client_env: Mapping[str, str], key: paramiko.PKey | None = None
) -> paramiko.SSHClient:
    """SSH to the SFTP service as connection.env says, checking its host key (RejectPolicy).

    ``key`` replaces the data scientists' key, to prove that a stranger's key is refused.
    """
    client = paramiko.SSHClient()
    client.load_host_keys(client_env["SFTP_KNOWN_HOSTS"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        client_env["SFTP_HOST"],
        port=int(client_env["SFTP_PORT"]),
        username=client_env["SFTP_USERNAME"],
        pkey=key,
        key_filename=None if key else client_env["SFTP_PRIVATE_KEY"],
        look_for_keys=False,
        allow_agent=False,
        timeout=15,
    )
    return client
