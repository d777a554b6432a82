"""What the artifact and DVC areas of `make bench` share: test data, a timer, the person's stock
OpenSSH `sftp` session to the stack's SFTP server, and clean-up of what the bench wrote there."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

CHUNK = 4 * 1024 * 1024
MIB = 1024 * 1024


def write_random(path: Path, size: int) -> None:
    """``size`` bytes of random data (incompressible, so no transport compression helps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = size
        while left:
            block = min(left, CHUNK)
            out.write(os.urandom(block))
            left -= block


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def remote_root(connection: Mapping[str, str]) -> str:
    """The person's area on the SFTP server: the path of their DVC_REMOTE_URL."""
    return urlsplit(connection["DVC_REMOTE_URL"]).path.rstrip("/")


def sftp(connection: Mapping[str, str], commands: str) -> None:
    """Run ``commands`` in one stock OpenSSH `sftp -b` session with the person's key, checking
    the server's host key against their known_hosts."""
    argv = [
        "sftp", "-q", "-b", "-", "-P", connection["SFTP_PORT"],
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={connection['SFTP_KNOWN_HOSTS']}",
        "-o", "StrictHostKeyChecking=yes",
        "-i", connection["SFTP_PRIVATE_KEY"],
        f"{connection['SFTP_USERNAME']}@{connection['SFTP_HOST']}",
    ]  # fmt: skip
    result = subprocess.run(
        argv, input=commands, capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"sftp failed ({result.returncode}):\n{commands}\n{result.stderr}")


def remove_remote(connection: Mapping[str, str], path: str) -> None:
    """Delete ``path`` (a tree the bench wrote) from the SFTP server, as the person."""
    # The smoke suite's connection: the person's key, host key checked against their known_hosts.
    from tests.smoke.smoke_support import connect_sftp

    client = connect_sftp(connection)
    try:
        session = client.open_sftp()

        def remove(target: str) -> None:
            for entry in session.listdir_attr(target):
                child = f"{target}/{entry.filename}"
                if stat.S_ISDIR(entry.st_mode or 0):
                    remove(child)
                else:
                    session.remove(child)
            session.rmdir(target)

        with contextlib.suppress(FileNotFoundError):
            remove(path)
    finally:
        client.close()
