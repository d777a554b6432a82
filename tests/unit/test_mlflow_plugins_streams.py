"""Pure logic of the MLflow image's plugins: the run look-ups the auth app keeps
(mlops_kit_auth/runs.py), the pipelined reads of a streamed download, the order of a streamed
upload's SFTP calls, the request sizes and the cipher order (mlops_kit_sftp).
The servers themselves are attacked in tests/images (test_mlflow_roles.py, test_mlflow.py)."""

from __future__ import annotations

import asyncio
import sys
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "mlflow" / "plugins"))
import mlops_kit_sftp
from mlops_kit_auth.runs import remember_runs, remembering


class CountingLookup:
    """MLflow's ``_run_requirement`` over a fixed table of runs, counting its calls."""

    def __init__(self, experiments: dict[str, str]) -> None:
        self.experiments = experiments
        self.calls: list[tuple[str, str]] = []

    def __call__(self, run_id: str, action: str):
        self.calls.append((run_id, action))
        experiment = self.experiments.get(run_id)
        if experiment is None:
            return None
        return ("experiment", experiment), [("experiment", experiment, "read"), ("run", action)]


def test_a_run_is_looked_up_once_per_action() -> None:
    lookup = CountingLookup({"r1": "7"})
    kept = remembering(lookup)
    first = kept("r1", "update")
    assert first == (("experiment", "7"), [("experiment", "7", "read"), ("run", "update")])
    assert kept("r1", "update") == first
    assert kept("r1", "read")[1][-1] == ("run", "read")
    assert lookup.calls == [("r1", "update"), ("r1", "read")]


def test_an_unknown_run_is_asked_again_every_time() -> None:
    lookup = CountingLookup({})
    kept = remembering(lookup)
    assert kept("ghost", "update") is None
    lookup.experiments["ghost"] = "3"  # created since (run ids are never reused, but be safe)
    assert kept("ghost", "update") == (("experiment", "3"), [("experiment", "3", "read"),
                                                              ("run", "update")])  # fmt: skip
    assert lookup.calls == [("ghost", "update")] * 2


def test_each_caller_gets_a_list_of_its_own() -> None:
    kept = remembering(CountingLookup({"r1": "7"}))
    _anchor, requirements = kept("r1", "update")
    requirements.append("a logged model's requirement")  # what MLflow does with it
    assert kept("r1", "update")[1] == [("experiment", "7", "read"), ("run", "update")]


def test_the_oldest_runs_make_room() -> None:
    lookup = CountingLookup({f"r{i}": "1" for i in range(3)})
    kept = remembering(lookup, size=2)
    for run in ("r0", "r1", "r2", "r0"):
        kept(run, "update")
    assert lookup.calls.count(("r0", "update")) == 2


def test_wrapping_is_done_once_and_skipped_without_the_function() -> None:
    class Auth:
        _run_requirement = CountingLookup({})

    assert remember_runs(Auth)
    wrapped = Auth._run_requirement
    assert remember_runs(Auth)
    assert Auth._run_requirement is wrapped
    assert remember_runs(type("OtherMlflow", (), {})) is False


class FakeReply:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_string(self) -> bytes:
        return self.data


class ScramblingSession:
    """A fake open remote file and its SFTP session (paramiko's ``_async_request`` and
    ``_read_response``) that answers requests in a scrambled order, as a server may, and counts
    the requests in flight. Subclasses say what a request does and how it is answered."""

    command = 0

    def __init__(self) -> None:
        self.handle = b"h"
        self.sftp = self
        self.waiting: dict[int, tuple[object, object]] = {}
        self.most_in_flight = 0
        self.lengths: list[int] = []
        self.numbers = iter(range(10**9))

    def _async_request(self, requester, command, handle, offset, argument) -> int:
        assert (command, handle) == (self.command, self.handle)
        number = next(self.numbers)
        self.waiting[number] = (requester, self.requested(int(offset), argument))
        self.most_in_flight = max(self.most_in_flight, len(self.waiting))
        return number

    def _read_response(self) -> None:
        number = max(self.waiting) if len(self.waiting) % 2 else min(self.waiting)
        requester, request = self.waiting.pop(number)
        kind, reply = self.answer(request)
        requester._async_response(kind, reply, number)

    def requested(self, offset: int, argument) -> object:
        raise NotImplementedError

    def answer(self, request) -> tuple[int, object]:
        raise NotImplementedError


class FakeSftpFile(ScramblingSession):
    """A remote file to read."""

    command = mlops_kit_sftp.CMD_READ

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def requested(self, offset: int, length) -> tuple[int, int]:
        self.lengths.append(int(length))
        return offset, int(length)

    def answer(self, request: tuple[int, int]) -> tuple[int, object]:
        offset, length = request
        return mlops_kit_sftp.CMD_DATA, FakeReply(self.data[offset : offset + length])


def stream(
    remote: FakeSftpFile, size: int, request_bytes: int = mlops_kit_sftp.BASE_REQUEST_BYTES
) -> tuple[object, list[bool]]:
    released: list[bool] = []
    held = ExitStack()
    held.callback(released.append, True)
    return mlops_kit_sftp._stream_file(remote, size, held, request_bytes), released


@pytest.mark.parametrize("request_bytes", [32 * 1024, 255 * 1024])
@pytest.mark.parametrize("size", [0, 1, 32 * 1024, 5 * 1024 * 1024 + 7])
def test_a_download_comes_whole_and_in_order_with_bounded_reads_in_flight(
    size: int, request_bytes: int
) -> None:
    data = bytes(i % 251 for i in range(size))
    remote = FakeSftpFile(data)
    chunks, released = stream(remote, size, request_bytes)
    pieces = list(chunks)
    assert b"".join(pieces) == data
    assert max(remote.lengths, default=0) <= request_bytes
    assert remote.most_in_flight * request_bytes <= max(
        mlops_kit_sftp.READ_AHEAD_BYTES, request_bytes
    )
    assert all(len(piece) < 2 * mlops_kit_sftp.STREAM_CHUNK_BYTES for piece in pieces)
    assert released == [True]


def test_a_file_that_shrinks_while_read_is_an_error() -> None:
    remote = FakeSftpFile(bytes(100_000))
    chunks, released = stream(remote, 200_000)  # the size stat() gave before it shrank
    with pytest.raises(mlops_kit_sftp.SFTPError, match="changed"):
        list(chunks)
    assert released == [True]


def test_a_download_abandoned_half_way_gives_its_connection_back() -> None:
    size = 8 * mlops_kit_sftp.STREAM_CHUNK_BYTES
    remote = FakeSftpFile(bytes(size))
    chunks, released = stream(remote, size)
    next(chunks)
    chunks.close()  # what the server does when the client hangs up
    assert released == [True]


def test_gcm_is_offered_first_and_nothing_is_dropped() -> None:
    offered = ("aes128-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    ordered = mlops_kit_sftp.prefer_ciphers(offered, mlops_kit_sftp.PREFERRED_CIPHERS)
    assert ordered[:2] == mlops_kit_sftp.PREFERRED_CIPHERS
    assert sorted(ordered) == sorted(offered)
    assert mlops_kit_sftp.prefer_ciphers(("aes128-ctr",), ("x-gcm",)) == ("aes128-ctr",)


class FakeLimitsServer:
    """A paramiko SFTPClient's ``_request`` against a server that states ``limits`` (packet,
    read, write, handles) with limits@openssh.com, or does not know the extension."""

    def __init__(self, limits: tuple[int, int, int, int] | None) -> None:
        self.limits = limits
        self.asked = 0

    def _request(self, command: int, name: str):
        assert (command, name) == (mlops_kit_sftp.CMD_EXTENDED, "limits@openssh.com")
        self.asked += 1
        if self.limits is None:
            raise OSError("Operation unsupported")  # SSH_FX_OP_UNSUPPORTED, as paramiko raises it
        reply = paramiko.Message()
        for limit in self.limits:
            reply.add_int64(limit)
        reply.rewind()
        return mlops_kit_sftp.CMD_EXTENDED_REPLY, reply


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ((262144, 261120, 261120, 0), (255 * 1024, 255 * 1024)),  # OpenSSH 9
        ((1 << 20, 1 << 20, 64 * 1024, 0), (255 * 1024, 64 * 1024)),  # capped, each on its own
        ((0, 0, 0, 0), (32 * 1024, 32 * 1024)),  # "no limit" is not a size
        ((0, 16 * 1024, 16 * 1024, 0), (16 * 1024, 16 * 1024)),  # smaller than the base: obeyed
        (None, (32 * 1024, 32 * 1024)),  # not OpenSSH
    ],
)
def test_request_sizes_follow_what_the_server_states(limits, expected) -> None:
    server = FakeLimitsServer(limits)
    assert tuple(mlops_kit_sftp.request_sizes(server)) == expected
    assert tuple(mlops_kit_sftp.request_sizes(server)) == expected
    assert server.asked == 1  # once per connection


class FakeUploadFile:
    """What ``_new_remote_file`` yields, recording each call in ``events`` in order; a write
    can be held until the test lets it go."""

    def __init__(self, events: list[str], hold_first_write: threading.Event | None = None):
        self.events = events
        self.hold_first_write = hold_first_write
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.events.append("write-start")
        if self.hold_first_write is not None:
            assert self.hold_first_write.wait(10), "the test never let the write go"
            self.hold_first_write = None
        self.written += data
        self.events.append("write-end")


def upload_repository(remote: FakeUploadFile) -> mlops_kit_sftp.ReconnectingSFTPArtifactRepository:
    """The store with its SFTP side replaced by ``remote`` (no connection is made)."""
    repository = object.__new__(mlops_kit_sftp.ReconnectingSFTPArtifactRepository)

    @contextmanager
    def new_remote_file(_name: str, _path: str | None):
        try:
            yield remote
        except BaseException as error:
            remote.events.append(f"abandoned: {type(error).__name__}")
            raise
        remote.events.append("renamed into place")

    repository._new_remote_file = new_remote_file  # type: ignore[method-assign]
    return repository


MIB = mlops_kit_sftp.STREAM_CHUNK_BYTES


def test_a_streamed_upload_is_written_whole_then_renamed() -> None:
    events: list[str] = []
    remote = FakeUploadFile(events)
    body = [bytes([i]) * (MIB // 3) for i in range(10)]

    async def chunks():
        for piece in body:
            yield piece

    asyncio.run(upload_repository(remote).log_artifact_from_async_stream(chunks(), "model.bin"))
    assert bytes(remote.written) == b"".join(body)
    assert events[-1] == "renamed into place"


def test_the_body_keeps_arriving_while_a_write_runs() -> None:
    events: list[str] = []
    next_mib_arrived = threading.Event()
    remote = FakeUploadFile(events, hold_first_write=next_mib_arrived)

    async def chunks():
        yield bytes(MIB)
        next_mib_arrived.set()  # reached only if the first write does not hold up the body
        events.append("second MiB asked for")
        yield bytes(MIB)

    asyncio.run(upload_repository(remote).log_artifact_from_async_stream(chunks(), "data.bin"))
    assert events.index("second MiB asked for") < events.index("write-end")
    assert len(remote.written) == 2 * MIB


def test_a_lost_client_closes_the_file_only_after_the_running_write() -> None:
    events: list[str] = []
    let_write_go = threading.Event()
    remote = FakeUploadFile(events, hold_first_write=let_write_go)

    async def chunks():
        yield bytes(MIB)
        await asyncio.sleep(3600)  # the client stops sending

    async def upload_then_hang_up() -> None:
        task = asyncio.create_task(
            upload_repository(remote).log_artifact_from_async_stream(chunks(), "data.bin")
        )
        while "write-start" not in events:
            await asyncio.sleep(0.01)
        task.cancel()  # the client is gone while the write runs
        await asyncio.sleep(0.05)
        let_write_go.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(upload_then_hang_up())
    assert events == ["write-start", "write-end", "abandoned: CancelledError"]


class FakeWriteServer(ScramblingSession):
    """A remote file to write that stores writes at their offsets; ``failing_from`` makes
    every write at or past that offset fail, as on a full disk."""

    command = mlops_kit_sftp.CMD_WRITE

    def __init__(self, failing_from: int | None = None) -> None:
        super().__init__()
        self.stored = bytearray()
        self.failing_from = failing_from

    def requested(self, offset: int, data) -> bool:
        data = bytes(data)
        self.lengths.append(len(data))
        failed = self.failing_from is not None and offset + len(data) > self.failing_from
        if not failed:
            self.stored[offset : offset + len(data)] = data
        return failed

    def answer(self, failed: bool) -> tuple[int, object]:
        reply = paramiko.Message()
        reply.add_int(paramiko.sftp.SFTP_FAILURE if failed else paramiko.sftp.SFTP_OK)
        reply.add_string("Failure" if failed else "Success")
        reply.rewind()
        return mlops_kit_sftp.CMD_STATUS, reply

    def _convert_status(self, message) -> None:
        if message.get_int() != paramiko.sftp.SFTP_OK:
            raise OSError(message.get_text())


@pytest.mark.parametrize("request_bytes", [32 * 1024, 255 * 1024])
def test_every_write_is_answered_before_the_upload_counts_as_whole(request_bytes: int) -> None:
    server = FakeWriteServer()
    writer = mlops_kit_sftp._PipelinedWriter(server, request_bytes)
    body = bytes(i % 253 for i in range(5 * MIB + 11))
    for start in range(0, len(body), MIB):
        writer.write(body[start : start + MIB])
    writer.finish()
    assert bytes(server.stored) == body
    assert not server.waiting
    assert max(server.lengths) <= request_bytes
    assert server.most_in_flight * request_bytes <= max(
        mlops_kit_sftp.WRITE_AHEAD_BYTES, request_bytes
    )


def test_a_write_that_fails_at_the_very_end_of_a_file_fails_the_upload() -> None:
    size = 5 * MIB
    server = FakeWriteServer(failing_from=size - 1)  # only the last request fails
    writer = mlops_kit_sftp._PipelinedWriter(server, 255 * 1024)

    def upload() -> None:
        for _ in range(size // MIB):
            writer.write(bytes(MIB))
        writer.finish()

    with pytest.raises(OSError, match="Failure"):
        upload()


def test_sftp_sessions_open_on_a_channel_the_read_ahead_fits_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[dict[str, int]] = []

    def from_transport(_transport: object, **sizes: int) -> str:
        opened.append(sizes)
        return "sftp client"

    monkeypatch.setattr(paramiko.SFTPClient, "from_transport", from_transport)
    connection = SimpleNamespace(_sftp_live=False, _sftp=None, _transport=object())
    assert mlops_kit_sftp._with_wide_channel(connection) is connection
    assert connection._sftp == "sftp client"
    mlops_kit_sftp._with_wide_channel(connection)  # opened already: left as it is
    [sizes] = opened
    # The window: all answers asked for at once; a packet: one whole answer to a read (its
    # data and the 13 bytes before it).
    assert sizes["window_size"] >= mlops_kit_sftp.READ_AHEAD_BYTES
    assert sizes["max_packet_size"] >= mlops_kit_sftp.LARGEST_REQUEST_BYTES + 13
