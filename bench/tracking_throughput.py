"""Throughput of a deployed tracking server: concurrent clients sending log_batch requests.

Usage: .venv/bin/python bench/tracking_throughput.py [ENV] --person NAME [--clients 8]
       [--seconds 20]

Reads build/<ENV>/people/<NAME>/connection.env (default ENV: local; NAME an editor), so it
measures the server the way data scientists reach it (basic auth and roles included). Each
client thread logs batches of 100 metrics into
its own run for a bounded time, then the figures are printed: requests per second, metric
values per second, p50/p95/p99 latency, errors. Only the tracking URI of the environment is
contacted (127.0.0.1 for the local targets).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from mlopskit.environments import check_environment, read_connection  # noqa: E402
from mlopskit.people import people_file, read_people  # noqa: E402

BATCH = 100


def pick_person(env, name: str) -> str:
    """NAME, else the first editor or admin of deploy/<env>/people.yml with DVC write."""
    if name:
        return name
    for person in read_people(people_file(env)):
        if person.mlflow in {"editor", "admin"} and person.dvc == "write":
            return person.name
    raise SystemExit(
        f"deploy/{env.name}/people.yml lists no editor with DVC write: "
        f"`make add-user ENV={env.name} NAME=bencher ROLE=editor DVC=write`"
    )


def client_loop(deadline: float, latencies: list[float], errors: list[str], experiment: str):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run_id = client.create_run(experiment).info.run_id
    step = 0
    while time.monotonic() < deadline:
        now = int(time.time() * 1000)
        metrics = [Metric(f"m{i}", float(i), now, step) for i in range(BATCH)]
        started = time.monotonic()
        try:
            client.log_batch(run_id, metrics=metrics)
            latencies.append(time.monotonic() - started)
        except Exception as exc:  # count and report; one failure must not stop the bench
            errors.append(type(exc).__name__)
        step += 1
    client.set_terminated(run_id)


@dataclass(frozen=True)
class Result:
    clients: int
    seconds: float
    requests: int
    errors: list[str]
    latencies: list[float]

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def quantile(self, percent: int) -> float:
        """The latency under which ``percent`` % of the requests finished (seconds)."""
        return statistics.quantiles(self.latencies, n=100)[percent - 1]


@contextmanager
def connection_env(values: Mapping[str, str]):
    """os.environ with the MLflow connection ``values`` (and no other MLFLOW_TRACKING_*)."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("MLFLOW_TRACKING_")]:
        del os.environ[key]
    os.environ.update(values)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def measure(connection: Mapping[str, str], clients: int, seconds: float) -> Result:
    """``clients`` threads sending log_batch(BATCH) for ``seconds`` to the server of
    ``connection`` (MLFLOW_TRACKING_URI and, with basic auth, _USERNAME and _PASSWORD)."""
    with connection_env(connection):
        from mlflow.tracking import MlflowClient

        experiment = MlflowClient().create_experiment(f"bench-{time.time_ns()}")
        latencies: list[float] = []
        errors: list[str] = []
        started = time.monotonic()
        deadline = started + seconds
        threads = [
            threading.Thread(target=client_loop, args=(deadline, latencies, errors, experiment))
            for _ in range(clients)
        ]
        # Ending a run prints its URL; hundreds of those would bury the figures.
        with redirect_stdout(io.StringIO()):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=seconds + 120)
        elapsed = time.monotonic() - started
    return Result(clients, elapsed, len(latencies), errors, latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env", nargs="?", default="local")
    parser.add_argument("--person", required=True, help="an editor of deploy/ENV/people.yml")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 1 <= args.seconds <= 300:
        parser.error("--clients must be 1..64 and --seconds 1..300")
    connection = read_connection(check_environment(args.env), args.person)
    result = measure(connection, args.clients, args.seconds)
    if not result.latencies:
        print(f"no request succeeded; errors: {result.errors[:5]}")
        return 1
    print(
        f"environment {args.env}: {args.clients} clients, log_batch({BATCH}) "
        f"for {result.seconds:.1f}s"
    )
    print(f"  requests/s    {result.requests_per_second:8.1f}")
    print(f"  metric values/s {result.requests_per_second * BATCH:6.0f}")
    print(f"  latency p50   {result.quantile(50):8.3f}s")
    print(f"  latency p95   {result.quantile(95):8.3f}s")
    print(f"  latency p99   {result.quantile(99):8.3f}s")
    print(f"  errors        {len(result.errors):8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
