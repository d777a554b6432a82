"""Tracking area of `make bench`: log_batch throughput and latency of this stack beside a stock
`mlflow server` (SQLite, default settings) started here, at several client counts.

The load itself is bench/tracking_throughput.py's `measure`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.report import Point, Row, at_least, at_most
from bench.tracking_throughput import BATCH, measure

AREA = "tracking"
STOCK = "stock `mlflow server` (SQLite, defaults)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def stock_server(log: Path) -> Iterator[str]:
    """A stock `mlflow server` of this virtualenv's MLflow: SQLite backend and local artifacts
    in a temporary directory, default workers, on a free local port. Yields its URI."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    with tempfile.TemporaryDirectory(prefix="mlops-bench-stock-") as scratch, log.open("w") as out:
        command = [
            str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{scratch}/mlflow.db",
            "--artifacts-destination", f"{scratch}/artifacts",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=scratch, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        uri = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"stock mlflow server exited {process.returncode}: {log}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{uri}/health", timeout=2).ok:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stock mlflow server did not answer in 180 s: {log}")
                time.sleep(1)
            yield uri
        finally:
            # Its own process group: the server and its workers, nothing else.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def points(connection: Mapping[str, str], clients: Sequence[int], seconds: float) -> list[Point]:
    """One measurement per client count against the server of ``connection``."""
    result = []
    for count in clients:
        measured = measure(connection, count, seconds)
        if not measured.latencies:
            raise RuntimeError(
                f"no log_batch request succeeded at {count} clients against "
                f"{connection['MLFLOW_TRACKING_URI']}: {measured.errors[:3]}"
            )
        if measured.errors:
            print(f"  {len(measured.errors)} failed requests: {sorted(set(measured.errors))}")
        result.append(
            Point(count, measured.requests_per_second, measured.quantile(50), measured.quantile(99))
        )
        print(
            f"  {connection['MLFLOW_TRACKING_URI']} {count} clients: "
            f"{result[-1].requests_per_second:.1f} req/s, p99 {result[-1].p99:.3f} s"
        )
    return result


FIGURES: tuple[tuple[str, str, Callable[[Point], float]], ...] = (
    ("req/s", "req/s", lambda p: p.requests_per_second),
    ("p50", "ms", lambda p: p.p50 * 1000),
    ("p99", "ms", lambda p: p.p99 * 1000),
)
# Issue 14's goals for this stack (auth cache on) against the stock server, at GOAL_CLIENTS.
GOAL_CLIENTS = 16
GOALS = {"req/s": at_least(1.5), "p99": at_most(0.3)}
STACK = "basic auth, auth cache on"


def _clients(count: int) -> str:
    return f"{count} client" if count == 1 else f"{count} clients"


@dataclass(frozen=True)
class Series:
    """One server's points under ``label``; ``points`` None: not measured, for ``missing``."""

    label: str
    points: Sequence[Point] | None
    missing: str = ""


def rows(stock: Sequence[Point], series: Sequence[Series], area: str = AREA) -> list[Row]:
    """Per series and client count: req/s, p50 and p99, each beside the stock server's. A series
    not measured still shows the stock figures it would be compared with. The series labelled
    STACK carries the goals at GOAL_CLIENTS."""
    by_clients = {p.clients: p for p in stock}
    result: list[Row] = []
    for one in series:
        measured = {p.clients: p for p in one.points} if one.points is not None else {}
        counts = list(measured) if one.points is not None else list(by_clients)
        for count in counts:
            point, reference = measured.get(count), by_clients.get(count)
            name = f"log_batch({BATCH}), {_clients(count)}, {one.label}"
            for figure, unit, pick in FIGURES:
                judged = one.label == STACK and count == GOAL_CLIENTS
                result.append(
                    Row(
                        area,
                        f"{name}: {figure}",
                        unit,
                        pick(point) if point else None,
                        STOCK,
                        pick(reference) if reference else None,
                        one.missing,
                        GOALS.get(figure) if judged else None,
                    )
                )
    return result
