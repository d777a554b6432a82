"""`make bench`: this stack beside stock MLflow and raw OpenSSH, side by side in one run.

Usage: .venv/bin/python -m bench.run_all [ENV] [--person NAME] [--update-readme]
       [--seconds 10] [--clients 1,4,16] [--sizes 256,1024] [--skip AREA,…]

ENV (default local) must be deployed. Areas, all run by default:
- tracking: log_batch throughput and p50/p99 latency vs a stock `mlflow server` on SQLite started
  here, and (Docker target) this stack redeployed with the auth cache off;
- artifacts: files of each --sizes through the stock MLflow client vs `sftp` put/get;
- dvc: `dvc push`/`pull` of 1,000 files of 100 KiB (with the client's and the SFTP server's CPU
  time) and of one file of the largest size vs `sftp put -r`/`get -r`;
- memory (Docker target): the stack's containers, idle after the load;
- deploy (Docker target): cold, warm, and one changed setting (which containers it re-created);
- kubernetes: the tracking figures on the throwaway cluster (deploy/cluster/) with 1 and 2 MLflow
  replicas; starts the cluster (and stops it after) unless it runs.
Prints a Markdown table with the goals of issue 14 met or short, writes it to
build/bench-results/<UTC date-time>.md with a PNG of throughput and p99 against clients;
--update-readme rewrites the README's generated block from it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

from mlopskit.environments import BUILD_ROOT, REPO_ROOT, check_environment, read_connection
from mlopskit.stack import load_stack

from bench import artifacts, deploy, dvc_transfer, kubernetes, report, tracking
from bench.docker_deploy import playbook
from bench.report import Row, not_run
from bench.tracking_throughput import pick_person

CACHE_OFF = "basic auth, auth cache off (TTL 0)"

AREAS = ("tracking", "artifacts", "dvc", "memory", "deploy", "kubernetes")
DOCKER_ONLY = ("memory", "deploy")
# Not build/<env>/ (build/bench/ is the bench environment's): `make destroy ENV=bench PURGE=1`
# must not take the results with it.
OUTPUT_DIR = BUILD_ROOT / "bench-results"
README = REPO_ROOT / "README.md"


def conditions(args, env_name: str, person: str, started: datetime.datetime) -> list[str]:
    import mlflow

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"`make bench` of environment `{env_name}` as `{person}` (basic auth), "
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.machine()}, "
        f"MLflow {mlflow.__version__}, load average at start {load}.",
        f"Tracking: `log_batch` of {tracking.BATCH} metrics, each client in its own run, "
        f"{args.seconds:g} s per point; artifacts: the median of {artifacts.REPEATS} turns each "
        f"way, proxied and raw taking turns at going first; ratio = this stack ÷ reference; "
        f"goals: issue 14. "
        f"Areas skipped: {args.skip or 'none'}.",
    ]


def tracking_area(args, env, docker: bool, connection, workdir: Path):
    """Rows, the plot's series, and the stock server's points (the Kubernetes rows' reference)."""
    clients = [int(c) for c in args.clients.split(",")]
    print("tracking: this stack")
    stack_points = tracking.points(connection, clients, args.seconds)
    print("tracking: stock mlflow server")
    with tracking.stock_server(workdir / "stock-mlflow.log") as uri:
        stock_points = tracking.points({"MLFLOW_TRACKING_URI": uri}, clients, args.seconds)
    cache_off = tracking.Series(CACHE_OFF, None, "not run (Docker target only)")
    if docker:
        print("tracking: this stack redeployed with mlops_docker_auth_cache_ttl_seconds=0")
        try:
            playbook(env.deploy_dir, "deploy.yml", "-e", "mlops_docker_auth_cache_ttl_seconds=0",
                     env_name=env.name)  # fmt: skip
            cache_off = tracking.Series(
                CACHE_OFF, tracking.points(connection, clients, args.seconds)
            )
        finally:
            print("tracking: redeploying the environment's own settings")
            playbook(env.deploy_dir, "deploy.yml", env_name=env.name)
    series = {"this stack": stack_points, tracking.STOCK.replace("`", ""): stock_points}
    if cache_off.points:
        series["this stack, auth cache off"] = cache_off.points
    rows = tracking.rows(stock_points, [tracking.Series(tracking.STACK, stack_points), cache_off])
    return rows, series, stock_points


def docker_areas(args, env, docker: bool, skip: set[str]) -> list[Row]:
    """Memory first, while the containers are those the load ran on (the deploy area re-creates
    MLflow), then the deploys."""
    rows: list[Row] = []
    for area in DOCKER_ONLY:
        if area in skip:
            rows.append(not_run(area, "all", "", "skipped"))
        elif not docker:
            rows.append(not_run(area, "all", "", "not run (Docker target only)"))
        elif area == "memory":
            rows += deploy.memory(env, args.settle)
        else:
            rows += deploy.run(env)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", nargs="?", default="local")
    parser.add_argument("--person", default="", help="default: first editor with DVC write")
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0, help="per tracking point")
    parser.add_argument("--clients", default="1,4,16")
    # Issue 14's 256 MB and 1 GB. Proxied artifacts stream to and from SFTP, so MLflow's /tmp
    # (1 GiB) no longer caps them.
    parser.add_argument("--sizes", default="256,1024", help="artifact sizes (MiB)")
    parser.add_argument("--files", type=int, default=dvc_transfer.SMALL_FILES)
    parser.add_argument("--skip", default="", help=f"areas not to run, of {', '.join(AREAS)}")
    parser.add_argument("--settle", type=float, default=30.0, help="idle seconds before memory")
    args = parser.parse_args(argv)
    skip = {a for a in args.skip.split(",") if a}
    if skip - set(AREAS):
        parser.error(f"--skip takes {', '.join(AREAS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    env = check_environment(args.env)
    stack = load_stack(env.name)
    docker = stack.target == "docker"
    person = pick_person(env, args.person)
    connection = read_connection(env, person)
    started = datetime.datetime.now(datetime.UTC)
    rows: list[Row] = []
    series: dict = {}
    stock_points: list = []
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as scratch:
        workdir = Path(scratch)
        if "tracking" in skip:
            rows.append(not_run("tracking", "log_batch throughput", "req/s", "skipped"))
        else:
            area_rows, series, stock_points = tracking_area(args, env, docker, connection, workdir)
            rows += area_rows
        if "artifacts" in skip:
            rows.append(not_run("artifacts", "transfers", "", "skipped"))
        else:
            for size in sizes:
                print(f"artifacts: {size} MiB")
                rows += artifacts.run(connection, size, workdir)
        if "dvc" in skip:
            rows.append(not_run("dvc", "transfers", "", "skipped"))
        else:
            print("dvc:")
            server = stack.service("sftp").name if docker else None
            rows += dvc_transfer.run(connection, max(sizes), workdir, args.files, server)
    rows += docker_areas(args, env, docker, skip)
    if "kubernetes" in skip:
        rows.append(not_run("kubernetes", "tracking", "", "skipped"))
    elif not stock_points:
        rows.append(not_run("kubernetes", "tracking", "", "not run (needs the tracking area)"))
    else:
        clients = [int(c) for c in args.clients.split(",")]
        cluster_rows, cluster_series = kubernetes.run(stock_points, clients, args.seconds)
        rows += cluster_rows
        series.update(cluster_series)
    text = report.format_report(rows, conditions(args, env.name, person, started))
    print()
    print(text)
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    stem = OUTPUT_DIR / started.strftime("%Y%m%dT%H%M%SZ")
    stem.with_suffix(".md").write_text(text)
    if series:
        report.plot(series, stem.with_suffix(".png"), f"log_batch({tracking.BATCH}), {env.name}")
    png = f", {stem.with_suffix('.png')}" if series else ""
    print(f"written: {stem.with_suffix('.md')}{png}")
    if args.update_readme:
        README.write_text(report.replace_readme_block(README.read_text(), text))
        print(f"updated the generated block of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
