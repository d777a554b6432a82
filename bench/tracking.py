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
from pathlib import Path

import requests

from bench.report import Point, Row
from bench.tracking_throughput import BATCH, measure

AREA = "tracking"
STOCK = "stock `mlflow server` (SQLite, defaults)"
CACHE_OFF_FLAG = "--with-cache-off"


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


def _clients(count: int) -> str:
    return f"{count} client" if count == 1 else f"{count} clients"


def rows(
    stack: Sequence[Point],
    stock: Sequence[Point],
    cache_off: Sequence[Point] | None,
) -> list[Row]:
    """Per client count: req/s, p50 and p99 of this stack and, with the auth cache off, each
    beside the stock server's. ``cache_off`` None: those rows say it was not run."""
    by_clients = {p.clients: p for p in stock}
    result: list[Row] = []
    for label, series in (
        ("basic auth, auth cache on", stack),
        ("basic auth, auth cache off (TTL 0)", cache_off),
    ):
        missing = "" if series is not None else f"not run ({CACHE_OFF_FLAG})"
        # Not run: the rows still show the stock figures they would be compared with.
        measured = {p.clients: p for p in series} if series is not None else {}
        counts = [p.clients for p in series] if series is not None else list(by_clients)
        for count in counts:
            point, reference = measured.get(count), by_clients.get(count)
            name = f"log_batch({BATCH}), {_clients(count)}, {label}"
            for figure, unit, pick in FIGURES:
                result.append(
                    Row(
                        AREA,
                        f"{name}: {figure}",
                        unit,
                        pick(point) if point else None,
                        STOCK,
                        pick(reference) if reference else None,
                        missing,
                    )
                )
    return result
