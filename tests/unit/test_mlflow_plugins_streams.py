"""Pure logic of the MLflow image's plugins: the run look-ups the auth app keeps
(mlops_kit_auth/runs.py) and the bounded reads of a streamed download (mlops_kit_sftp).
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


class FakeRemoteFile:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.batches: list[int] = []

    def readv(self, requests: list[tuple[int, int]]):
        self.batches.append(sum(size for _offset, size in requests))
        for offset, size in requests:
            assert size <= mlops_kit_sftp.READ_REQUEST_BYTES
            yield self.data[offset : offset + size]


@pytest.mark.parametrize("size", [0, 1, mlops_kit_sftp.READ_WINDOW_BYTES, 20 * 1024 * 1024 + 5])
def test_a_download_comes_whole_and_in_order_a_window_at_a_time(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    remote = FakeRemoteFile(data)
    released: list[bool] = []
    held = ExitStack()
    held.callback(released.append, True)
    chunks = list(mlops_kit_sftp._read_in_windows(remote, size, held))
    assert b"".join(chunks) == data
    assert all(batch <= mlops_kit_sftp.READ_WINDOW_BYTES for batch in remote.batches)
    assert all(len(chunk) <= mlops_kit_sftp.READ_WINDOW_BYTES for chunk in chunks)
    assert released == [True]


def test_a_download_abandoned_half_way_gives_its_connection_back() -> None:
    size = 3 * mlops_kit_sftp.READ_WINDOW_BYTES
    remote = FakeRemoteFile(bytes(size))
    released: list[bool] = []
    held = ExitStack()
    held.callback(released.append, True)
    chunks = mlops_kit_sftp._read_in_windows(remote, size, held)
    next(chunks)
    chunks.close()  # what the server does when the client hangs up
    assert released == [True]
    assert len(remote.batches) == 1
