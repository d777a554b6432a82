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
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from mlopskit.environments import check_environment, read_connection  # noqa: E402

BATCH = 100


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env", nargs="?", default="local")
    parser.add_argument("--person", required=True, help="an editor of deploy/ENV/people.yml")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 1 <= args.seconds <= 300:
        parser.error("--clients must be 1..64 and --seconds 1..300")
    os.environ.update(read_connection(check_environment(args.env), args.person))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"

    from mlflow.tracking import MlflowClient

    experiment = MlflowClient().create_experiment(f"bench-{int(time.time())}")
    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [
        threading.Thread(target=client_loop, args=(deadline, latencies, errors, experiment))
        for _ in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.seconds + 120)
    elapsed = time.monotonic() - started
    if not latencies:
        print(f"no request succeeded; errors: {errors[:5]}")
        return 1
    cuts = statistics.quantiles(latencies, n=100)
    print(f"environment {args.env}: {args.clients} clients, log_batch({BATCH}) for {elapsed:.1f}s")
    print(f"  requests/s    {len(latencies) / elapsed:8.1f}")
    print(f"  metric values/s {len(latencies) * BATCH / elapsed:6.0f}")
    print(f"  latency p50   {cuts[49]:8.3f}s")
    print(f"  latency p95   {cuts[94]:8.3f}s")
    print(f"  latency p99   {cuts[98]:8.3f}s")
    print(f"  errors        {len(errors):8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
