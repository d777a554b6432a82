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

And the stock store has no streaming upload, so the server first copied each proxied upload
whole into its /tmp and only then sent it to the SFTP server: two transfers one after the
other, and no file larger than /tmp. This store writes the request body to SFTP as it arrives
(MLflow's StreamUploadMixin). Downloads the same way, the other way round
(``open_artifact_stream``, served by mlops_kit_app.downloads).
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import stat
import uuid
from collections import deque
from collections.abc import AsyncIterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from itertools import islice
from queue import Queue
from typing import Any, BinaryIO, NamedTuple

import paramiko
import pysftp
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from mlflow.store.artifact.artifact_repo import StreamUploadMixin
from mlflow.store.artifact.sftp_artifact_repo import SFTPArtifactRepository
from paramiko.sftp import (
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_READ,
    CMD_STATUS,
    CMD_WRITE,
    SFTPError,
    int64,
)

_logger = logging.getLogger(__name__)

# AES-GCM (an AEAD cipher, no separate MAC) first: paramiko offers it last, after AES-CTR with
# HMAC-SHA2, and with it the server spent about a quarter less CPU per byte on SFTP transfers
# (measured in the image against the sftp image: 128 MiB put 0.46 s vs 0.63 s of CPU, get 0.54 s
# vs 0.72 s, three runs each). The client's order decides; every cipher stays offered after it.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def prefer_ciphers(offered: tuple[str, ...], first: tuple[str, ...]) -> tuple[str, ...]:
    """``offered`` with those of ``first`` it holds moved to the front, in ``first``'s order."""
    return tuple(c for c in first if c in offered) + tuple(c for c in offered if c not in first)


paramiko.Transport._preferred_ciphers = prefer_ciphers(
    paramiko.Transport._preferred_ciphers, PREFERRED_CIPHERS
)


def _is_alive(connection: Any) -> bool:
    transport = getattr(connection, "_transport", None)
    return transport is not None and transport.is_active()


def _with_wide_channel(connection: Any) -> Any:
    """``connection`` (pysftp) with its SFTP session opened on a channel of
    CHANNEL_WINDOW_BYTES and CHANNEL_PACKET_BYTES; pysftp opens it with paramiko's defaults, at
    first use."""
    if not connection._sftp_live:
        connection._sftp = paramiko.SFTPClient.from_transport(
            connection._transport,
            window_size=CHANNEL_WINDOW_BYTES,
            max_packet_size=CHANNEL_PACKET_BYTES,
        )
        connection._sftp_live = True
    return connection


class _ReconnectingPool:
    def __init__(self, connections: list[Any], config: dict[str, Any]) -> None:
        self._config = config
        self._idle: Queue[Any] = Queue()
        for connection in connections:
            self._idle.put(_with_wide_channel(connection))

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
                connection = _with_wide_channel(pysftp.Connection(**self._config))
            yield connection
        finally:
            self._idle.put(connection)


class ReconnectingSFTPArtifactRepository(SFTPArtifactRepository, StreamUploadMixin):
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

    @contextmanager
    def _new_remote_file(
        self, artifact_file_name: str, artifact_path: str | None
    ) -> Iterator[_PipelinedWriter]:
        """A remote file to write that becomes the artifact when the block ends without error
        (and every write has been confirmed)."""
        artifact_dir = posixpath.join(self.path, artifact_path) if artifact_path else self.path
        name = posixpath.basename(artifact_file_name)
        with self.pool.get_sftp_connection() as sftp:
            sftp.makedirs(artifact_dir)
            with _whole(sftp, posixpath.join(artifact_dir, name)) as partial:
                write_bytes = request_sizes(sftp.sftp_client).write
                with sftp.sftp_client.open(partial, "wb") as remote:
                    writer = _PipelinedWriter(remote, write_bytes)
                    yield writer
                    writer.finish()

    def log_artifact_from_stream(
        self, stream: BinaryIO, artifact_file_name: str, artifact_path: str | None = None
    ) -> None:
        with self._new_remote_file(artifact_file_name, artifact_path) as remote:
            while chunk := stream.read(STREAM_CHUNK_BYTES):
                remote.write(chunk)

    async def log_artifact_from_async_stream(
        self,
        chunks: AsyncIterable[bytes],
        artifact_file_name: str,
        artifact_path: str | None = None,
    ) -> None:
        # The SFTP calls run in order on a thread of this upload's own, so the file is closed
        # only after the write before it has ended, even when this task is cancelled meanwhile
        # (a lost client). One write stays in flight while the next MiB of the body arrives.
        opened = self._new_remote_file(artifact_file_name, artifact_path)
        sftp_calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-kit-upload")
        entered = sftp_calls.submit(opened.__enter__)
        try:
            remote = await asyncio.wrap_future(entered)
            writing: Future[Any] | None = None
            pending = bytearray()
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= STREAM_CHUNK_BYTES:
                    if writing is not None:
                        await asyncio.wrap_future(writing)
                    writing = sftp_calls.submit(remote.write, bytes(pending))
                    pending.clear()
            if writing is not None:
                await asyncio.wrap_future(writing)
            if pending:
                await asyncio.wrap_future(sftp_calls.submit(remote.write, bytes(pending)))
        except BaseException as error:  # a lost client or a failed write: no artifact
            await asyncio.wrap_future(sftp_calls.submit(_abandon, opened, entered, error))
            raise
        else:
            await asyncio.wrap_future(sftp_calls.submit(opened.__exit__, None, None, None))
        finally:
            sftp_calls.shutdown(wait=False)

    def open_artifact_stream(self, artifact_path: str) -> tuple[int, Iterator[bytes]]:
        """The size of one artifact file and its bytes, read from SFTP as they are taken. The
        pooled connection is held until the bytes are all read or the iterator is closed."""
        remote_path = posixpath.join(self.path, artifact_path)
        with ExitStack() as held:
            sftp = held.enter_context(self.pool.get_sftp_connection())
            try:
                attributes = sftp.sftp_client.stat(remote_path)
            except FileNotFoundError:
                raise MlflowException(
                    f"No artifact at '{artifact_path}'", error_code=RESOURCE_DOES_NOT_EXIST
                ) from None
            if stat.S_ISDIR(attributes.st_mode or 0):
                raise MlflowException(
                    f"Artifact path refers to a directory, not a file: '{artifact_path}'",
                    error_code=INVALID_PARAMETER_VALUE,
                )
            remote = held.enter_context(sftp.sftp_client.open(remote_path, "rb"))
            size = attributes.st_size or 0
            read_bytes = request_sizes(sftp.sftp_client).read
            return size, _stream_file(remote, size, held.pop_all(), read_bytes)
        raise AssertionError("unreachable")  # for type checkers: the block returns or raises

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


# Bytes handed to one SFTP write of a streamed upload (MLflow's own stream chunk).
STREAM_CHUNK_BYTES = 1024 * 1024
# Every SFTP server takes reads and writes of 32 KiB (paramiko's size, and OpenSSH's sftp
# without the extension below). OpenSSH's server says it takes up to 255 KiB
# (limits@openssh.com), and its own sftp client then sends that much per request. Fewer,
# larger requests cost both ends less per byte: a proxied 1 GiB upload went from 127-151 to
# 140-175 MiB/s (CPU per GiB: MLflow 6.0 -> 5.0 s, the SFTP server 3.4 -> 2.3 s); a download,
# with READ_AHEAD_BYTES below, spent a third less CPU in MLflow.
BASE_REQUEST_BYTES = 32 * 1024
LARGEST_REQUEST_BYTES = 255 * 1024
LIMITS_EXTENSION = "limits@openssh.com"
# A streamed download keeps this many bytes of SFTP reads asked for and not yet answered, so one
# download holds about 9 MiB in memory (with STREAM_CHUNK_BYTES) however slow its client is.
# 32 reads of 255 KiB: with 8 (2 MiB, what OpenSSH's sftp keeps in flight) a 1 GiB download ran
# at 104-129 MiB/s, with 16 at 149-163. Read in the image by a consumer that spends 4 ms on each
# MiB (about what the HTTP side takes): 124-130 MiB/s with 4 MiB ahead, 191-211 with 8, 131-154
# with 16. The reads ahead must cover the time the consumer is away. In `make bench` (medians of
# 3) a 1 GiB proxied download then ran at 0.94-1.02x of raw sftp; a thread reading pieces ahead
# of Starlette's (tried, removed) brought it down to 0.69-0.76x.
READ_AHEAD_BYTES = 8 * 1024 * 1024
# An upload keeps at most this many bytes of SFTP writes sent and not yet answered, as a
# download does with its reads.
WRITE_AHEAD_BYTES = 4 * 1024 * 1024
# The SSH channel of each SFTP session (paramiko's defaults: a 2 MiB window, 32 KiB packets). A
# window below READ_AHEAD_BYTES held the server's answers back until the reader had taken some;
# 256 KiB packets carry a 255 KiB read answer in one packet instead of eight. A 1 GiB proxied
# download here went from 110-134 to 140-193 MiB/s with a 16 MiB window (window alone: 112-154),
# and ran at 147 MiB/s with this one in `make bench`; uploads are bounded by the server's own
# window and packets, and did not move. The window is only credit: no more than
# READ_AHEAD_BYTES of answers are ever asked for.
CHANNEL_WINDOW_BYTES = 2 * READ_AHEAD_BYTES
CHANNEL_PACKET_BYTES = 256 * 1024


class RequestSizes(NamedTuple):
    read: int
    write: int


def request_sizes(client: Any) -> RequestSizes:
    """The largest reads and writes to send to ``client``'s server (a paramiko SFTPClient),
    asked once per connection."""
    known = getattr(client, "_mlops_kit_request_sizes", None)
    if known is None:
        known = RequestSizes(BASE_REQUEST_BYTES, BASE_REQUEST_BYTES)
        try:
            kind, reply = client._request(CMD_EXTENDED, LIMITS_EXTENSION)
        except (OSError, EOFError, SFTPError):
            pass  # not OpenSSH (SSH_FX_OP_UNSUPPORTED): the base size
        else:
            if kind == CMD_EXTENDED_REPLY:
                _packet, read, write = reply.get_int64(), reply.get_int64(), reply.get_int64()
                known = RequestSizes(usable_request_bytes(read), usable_request_bytes(write))
        client._mlops_kit_request_sizes = known
    return known


def usable_request_bytes(limit: int) -> int:
    """The request size to use under a server's stated ``limit`` (0: it states none)."""
    return min(limit, LARGEST_REQUEST_BYTES) if limit > 0 else BASE_REQUEST_BYTES


class _PipelinedReader:
    """Reads one remote file from one thread, ``READ_AHEAD_BYTES`` of requests in flight.

    paramiko's own read-ahead (``prefetch``, ``readv``, ``get``) sends its requests from a
    second thread, and its reply handler busy-waits for that thread to file each request: a
    race that stalled 8 MiB reads here for up to 1.6 s where they usually take 0.07 s (eight
    reads of one 256 MiB file: 1.1-3.4 s with ``readv``, 1.4-1.9 s with this reader). This
    reader sends and receives in the same thread; paramiko hands it each reply
    (``_async_response``).
    """

    def __init__(self, remote: Any, size: int, request_bytes: int) -> None:
        self._remote = remote
        self._size = size
        self._request_bytes = request_bytes
        self.in_flight = max(1, READ_AHEAD_BYTES // request_bytes)
        self._replies: dict[int, tuple[int, Any]] = {}

    def _async_response(self, kind: int, message: Any, number: int) -> None:
        self._replies[number] = (kind, message)

    def chunks(self) -> Iterator[bytes]:
        sftp = self._remote.sftp
        offsets = iter(range(0, self._size, self._request_bytes))
        in_flight: deque[tuple[int, int, int]] = deque()

        def ask(offset: int) -> None:
            length = min(self._request_bytes, self._size - offset)
            number = sftp._async_request(
                self, CMD_READ, self._remote.handle, int64(offset), int(length)
            )
            in_flight.append((number, offset, length))

        for offset in islice(offsets, self.in_flight):
            ask(offset)
        while in_flight:
            number, offset, length = in_flight.popleft()
            while number not in self._replies:
                sftp._read_response()  # reads one reply, hands it to its requester
            kind, message = self._replies.pop(number)
            if kind == CMD_STATUS:
                sftp._convert_status(message)  # raises: end of file, no permission, ...
            if kind != CMD_DATA:
                raise SFTPError(f"unexpected reply {kind} to a read")
            data = message.get_string()
            if len(data) != length:
                raise SFTPError(f"the file changed while it was read (short read at {offset})")
            following = next(offsets, None)
            if following is not None:
                ask(following)
            yield data


class _PipelinedWriter:
    """Writes one remote file from one thread, ``WRITE_AHEAD_BYTES`` of requests unanswered,
    and checks every answer.

    paramiko's own pipelined writes (``set_pipelined``) check the answers only while more than
    100 are waiting, and its ``close`` drops the ones still waiting: a write that failed near
    the end of a file (a full disk) went unnoticed, and the truncated file became the artifact.
    """

    def __init__(self, remote: Any, request_bytes: int) -> None:
        self._remote = remote
        self._request_bytes = request_bytes
        self._in_flight = max(1, WRITE_AHEAD_BYTES // request_bytes)
        self._unanswered: set[int] = set()
        self._failure: BaseException | None = None
        self._offset = 0

    def _async_response(self, kind: int, message: Any, number: int) -> None:
        self._unanswered.discard(number)
        if self._failure is not None:
            return
        if kind != CMD_STATUS:
            self._failure = SFTPError(f"unexpected reply {kind} to a write")
            return
        try:
            self._remote.sftp._convert_status(message)  # raises on anything but OK
        except (OSError, EOFError) as failure:
            self._failure = failure

    def _take_answer(self) -> None:
        self._remote.sftp._read_response()  # reads one answer, hands it to its requester
        if self._failure is not None:
            raise self._failure

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        sftp = self._remote.sftp
        for start in range(0, len(view), self._request_bytes):
            piece = view[start : start + self._request_bytes]
            while len(self._unanswered) >= self._in_flight:
                self._take_answer()
            number = sftp._async_request(
                self, CMD_WRITE, self._remote.handle, int64(self._offset), piece
            )
            self._unanswered.add(number)
            self._offset += len(piece)

    def finish(self) -> None:
        """Wait for every answer; raises if any write failed."""
        while self._unanswered:
            self._take_answer()
        if self._failure is not None:
            raise self._failure


def _stream_file(
    remote: Any, size: int, release: ExitStack, request_bytes: int = BASE_REQUEST_BYTES
) -> Iterator[bytes]:
    """The bytes of ``remote`` (``size`` long, read ``request_bytes`` per request) in pieces of
    about STREAM_CHUNK_BYTES; ``release`` is closed when they are all read or the iterator is
    closed."""
    try:
        pending = bytearray()
        for data in _PipelinedReader(remote, size, request_bytes).chunks():
            pending += data
            if len(pending) >= STREAM_CHUNK_BYTES:
                yield bytes(pending)
                pending.clear()
        if pending:
            yield bytes(pending)
    finally:
        release.close()


@contextmanager
def _whole(sftp: Any, remote_file: str) -> Iterator[str]:
    """A partial name beside ``remote_file`` to write; renamed into place when the block ends
    without error, removed when it raises."""
    directory, name = posixpath.split(remote_file)
    partial = posixpath.join(directory, f"{PARTIAL_PREFIX}{uuid.uuid4().hex}-{name}")
    try:
        yield partial
        # posix-rename@openssh.com replaces an existing artifact of that name, as a put did.
        sftp.sftp_client.posix_rename(partial, remote_file)
    except BaseException:
        with suppress(Exception):  # the connection may be what failed
            sftp.remove(partial)
        raise


def _abandon(opened: Any, entered: Future[Any], error: BaseException) -> None:
    """End an upload without an artifact: close its remote file and remove the partial name, if
    the file was opened at all (``entered`` ran before, on the same thread)."""
    if entered.cancelled() or entered.exception() is not None:
        return
    with suppress(BaseException):  # the error itself comes back out of __exit__
        opened.__exit__(type(error), error, error.__traceback__)


def _put_whole(sftp: Any, local_file: str, remote_file: str) -> None:
    with _whole(sftp, remote_file) as partial:
        sftp.put(local_file, partial)
