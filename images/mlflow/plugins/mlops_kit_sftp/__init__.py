"""MLflow's sftp:// artifact store, with connections that are checked before each use and
uploads that never leave a truncated file under an artifact's name.

The stock store opens a fixed pool of pysftp connections once per server process and never
replaces them, so after the SFTP server restarts every artifact request fails until MLflow
itself restarts (mlflow issue 14380). This store reopens a dead connection when it is taken
from the pool.

The stock store also writes each file straight to its final name: an upload cut short (a full
disk, a lost connection) leaves a truncated artifact that lists and downloads like a whole one.
This store writes to a hidden partial name in the same directory and renames it into place only
when the whole file is there (OpenSSH's posix-rename, atomic); a failed upload removes it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from queue import Queue
from typing import Any

import pysftp
from mlflow.store.artifact.sftp_artifact_repo import SFTPArtifactRepository

_logger = logging.getLogger(__name__)


def _is_alive(connection: Any) -> bool:
    transport = getattr(connection, "_transport", None)
    return transport is not None and transport.is_active()


class _ReconnectingPool:
    def __init__(self, connections: list[Any], config: dict[str, Any]) -> None:
        self._config = config
        self._idle: Queue[Any] = Queue()
        for connection in connections:
            self._idle.put(connection)

    @contextmanager
    def get_sftp_connection(self) -> Iterator[Any]:
        connection = self._idle.get(block=True)
        try:
            if not _is_alive(connection):
                _logger.warning(
                    "SFTP connection to %s was closed; reconnecting", self._config["host"]
                )
                with suppress(Exception):  # the old connection is already broken
                    connection.close()
                connection = pysftp.Connection(**self._config)
            yield connection
        finally:
            self._idle.put(connection)


class ReconnectingSFTPArtifactRepository(SFTPArtifactRepository):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        connections: list[Any] = []
        while not self.pool._idle_connection_queue.empty():
            connections.append(self.pool._idle_connection_queue.get())
        self.pool = _ReconnectingPool(connections, self.config)

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        artifact_dir = posixpath.join(self.path, artifact_path) if artifact_path else self.path
        with self.pool.get_sftp_connection() as sftp:
            sftp.makedirs(artifact_dir)
            _put_whole(sftp, local_file, posixpath.join(artifact_dir, os.path.basename(local_file)))

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        artifact_dir = posixpath.join(self.path, artifact_path) if artifact_path else self.path
        with self.pool.get_sftp_connection() as sftp:
            for root, _dirs, files in os.walk(local_dir):
                relative = os.path.relpath(root, local_dir)
                remote_dir = (
                    artifact_dir
                    if relative == os.curdir
                    else posixpath.join(artifact_dir, *relative.split(os.sep))
                )
                sftp.makedirs(remote_dir)
                for name in files:
                    _put_whole(sftp, os.path.join(root, name), posixpath.join(remote_dir, name))

    def list_artifacts(self, path: str | None = None) -> list[Any]:
        # An upload in progress is not an artifact yet.
        return [
            info
            for info in super().list_artifacts(path)
            if not posixpath.basename(info.path).startswith(PARTIAL_PREFIX)
        ]


# Hidden (a dot first) and unmistakable, in the target's directory so the rename stays on one
# file system.
PARTIAL_PREFIX = ".mlops-kit-partial-"


def _put_whole(sftp: Any, local_file: str, remote_file: str) -> None:
    """Upload to a partial name beside ``remote_file``, then rename it into place."""
    directory, name = posixpath.split(remote_file)
    partial = posixpath.join(directory, f"{PARTIAL_PREFIX}{uuid.uuid4().hex}-{name}")
    try:
        sftp.put(local_file, partial)
        # posix-rename@openssh.com replaces an existing artifact of that name, as a put did.
        sftp.sftp_client.posix_rename(partial, remote_file)
    except BaseException:
        with suppress(Exception):  # the connection may be what failed
            sftp.remove(partial)
        raise
