"""Pure logic of the MLflow image's plugins: the run look-ups the auth app keeps
(mlops_kit_auth/runs.py), the pipelined reads of a streamed download and the cipher order
(mlops_kit_sftp).
The servers themselves are attacked in tests/images (test_mlflow_roles.py, test_mlflow.py)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

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


class FakeSftpFile:
    """An open remote file over a fake SFTP session that answers reads in a scrambled order,
    as a server may, and counts the reads in flight."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.handle = b"h"
        self.sftp = self
        self.waiting: dict[int, tuple[object, int, int]] = {}
        self.most_in_flight = 0
        self.numbers = iter(range(10**9))

    def _async_request(self, requester, command, handle, offset, length) -> int:
        assert (command, handle) == (mlops_kit_sftp.CMD_READ, self.handle)
        number = next(self.numbers)
        self.waiting[number] = (requester, int(offset), int(length))
        self.most_in_flight = max(self.most_in_flight, len(self.waiting))
        return number

    def _read_response(self) -> None:
        number = max(self.waiting) if len(self.waiting) % 2 else min(self.waiting)
        requester, offset, length = self.waiting.pop(number)
        reply = FakeReply(self.data[offset : offset + length])
        requester._async_response(mlops_kit_sftp.CMD_DATA, reply, number)


def stream(remote: FakeSftpFile, size: int) -> tuple[object, list[bool]]:
    released: list[bool] = []
    held = ExitStack()
    held.callback(released.append, True)
    return mlops_kit_sftp._stream_file(remote, size, held), released


@pytest.mark.parametrize("size", [0, 1, 32 * 1024, 5 * 1024 * 1024 + 7])
def test_a_download_comes_whole_and_in_order_with_bounded_reads_in_flight(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    remote = FakeSftpFile(data)
    chunks, released = stream(remote, size)
    pieces = list(chunks)
    assert b"".join(pieces) == data
    assert remote.most_in_flight <= mlops_kit_sftp.READS_IN_FLIGHT
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
