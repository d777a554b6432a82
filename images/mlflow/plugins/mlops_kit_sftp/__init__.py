"""MLflow's sftp:// artifact store, with connections that are checked before each use.

The stock store opens a fixed pool of pysftp connections once per server process and never
replaces them, so after the SFTP server restarts every artifact request fails until MLflow
itself restarts (mlflow issue 14380). This store reopens a dead connection when it is taken
from the pool.
"""

from __future__ import annotations

import logging
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
