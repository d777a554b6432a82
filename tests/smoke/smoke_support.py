"""Constants and small helpers shared by the smoke tests (importable, unlike conftest)."""

from __future__ import annotations

from collections.abc import Mapping

import paramiko
from mlopskit.backup import sha256_file

ARTIFACT_BYTES = 50 * 1024 * 1024
ALIAS = "champion"


# One implementation of a file's SHA-256 for the tooling and the tests.
sha256_of = sha256_file


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
