"""`make bench`: this stack beside stock MLflow and raw OpenSSH, side by side in one run.

Usage: .venv/bin/python -m bench.run_all [ENV] [--person NAME] [--large] [--with-cache-off]
       [--with-deploy] [--update-readme] [--seconds 10] [--clients 1,4,16] [--only AREA,…]

ENV (default local) must be deployed. Areas: tracking (log_batch throughput and p50/p99 latency
vs a stock `mlflow server` on SQLite started here), artifacts (a 256 MiB file through the stock
MLflow client vs `sftp` put/get), dvc (`dvc push`/`pull` of 1,000 files of 100 KiB and one 256 MiB
file vs `sftp put -r`/`get -r`), deploy (warm deploy wall time, --with-deploy). Prints a
Markdown table, writes it to build/bench-results/<UTC date-time>.md with a PNG of throughput and p99
against clients; --update-readme rewrites the README's generated block from it.
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
from mlopskit.people import people_file, read_people
from mlopskit.stack import load_stack

from bench import artifacts, dvc_transfer, report, tracking
from bench.docker_deploy import playbook
from bench.report import Row, not_run

AREAS = ("tracking", "artifacts", "dvc", "deploy")
# Not build/<env>/ (build/bench/ is the bench environment's): `make destroy ENV=bench PURGE=1`
# must not take the results with it.
OUTPUT_DIR = BUILD_ROOT / "bench-results"
README = REPO_ROOT / "README.md"


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


def conditions(args, env_name: str, person: str, started: datetime.datetime) -> list[str]:
    import mlflow

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    flags = [f for f in ("large", "with_cache_off", "with_deploy") if getattr(args, f)]
    return [
        f"`make bench` of environment `{env_name}` as `{person}` (basic auth), "
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.machine()}, "
        f"MLflow {mlflow.__version__}, load average at start {load}.",
        f"Tracking: `log_batch` of {tracking.BATCH} metrics, each client in its own run, "
        f"{args.seconds:g} s per point; ratio = this stack ÷ reference. Flags: "
        f"{', '.join('--' + f.replace('_', '-') for f in flags) or 'none'}.",
    ]


def tracking_area(args, env, connection, workdir: Path) -> tuple[list[Row], dict]:
    clients = [int(c) for c in args.clients.split(",")]
    print("tracking: this stack")
    stack_points = tracking.points(connection, clients, args.seconds)
    print("tracking: stock mlflow server")
    with tracking.stock_server(workdir / "stock-mlflow.log") as uri:
        stock_points = tracking.points({"MLFLOW_TRACKING_URI": uri}, clients, args.seconds)
    cache_off = None
    if args.with_cache_off:
        print("tracking: this stack redeployed with mlops_docker_auth_cache_ttl_seconds=0")
        try:
            playbook(env.deploy_dir, "deploy.yml", "-e", "mlops_docker_auth_cache_ttl_seconds=0",
                     env_name=env.name)  # fmt: skip
            cache_off = tracking.points(connection, clients, args.seconds)
        finally:
            print("tracking: redeploying the environment's own settings")
            playbook(env.deploy_dir, "deploy.yml", env_name=env.name)
    series = {"this stack": stack_points, tracking.STOCK.replace("`", ""): stock_points}
    if cache_off:
        series["this stack, auth cache off"] = cache_off
    return tracking.rows(stack_points, stock_points, cache_off), series


def deploy_area(args, env) -> list[Row]:
    measure = "warm deploy (nothing changed), wall time"
    if not args.with_deploy:
        return [not_run("deploy", measure, "s", "not run (--with-deploy)")]
    print("deploy: warm deploy")
    return [Row("deploy", measure, "s", playbook(env.deploy_dir, "deploy.yml", env_name=env.name))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", nargs="?", default="local")
    parser.add_argument("--person", default="", help="default: first editor with DVC write")
    parser.add_argument("--large", action="store_true", help="1 GiB instead of 256 MiB files")
    parser.add_argument(
        "--with-cache-off",
        action="store_true",
        help="redeploy with the auth cache off, measure, redeploy as before",
    )
    parser.add_argument("--with-deploy", action="store_true", help="time a warm deploy")
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0, help="per tracking point")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--only", default=",".join(AREAS), help="areas to run (development)")
    parser.add_argument("--size-mib", type=int, default=0, help="override the file size")
    parser.add_argument("--files", type=int, default=dvc_transfer.SMALL_FILES)
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if only - set(AREAS):
        parser.error(f"--only takes {', '.join(AREAS)}")
    env = check_environment(args.env)
    if load_stack(env.name).target != "docker" and (args.with_cache_off or args.with_deploy):
        parser.error("--with-cache-off and --with-deploy redeploy a Docker-target environment")
    person = pick_person(env, args.person)
    connection = read_connection(env, person)
    size = args.size_mib or (1024 if args.large else 256)
    started = datetime.datetime.now(datetime.UTC)
    rows: list[Row] = []
    series: dict = {}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as scratch:
        workdir = Path(scratch)
        if "tracking" in only:
            area_rows, series = tracking_area(args, env, connection, workdir)
            rows += area_rows
        else:
            rows.append(not_run("tracking", "log_batch throughput", "req/s", "not run (--only)"))
        for name, area in (("artifacts", artifacts), ("dvc", dvc_transfer)):
            if name not in only:
                rows.append(not_run(name, "transfers", "", "not run (--only)"))
                continue
            print(f"{name}:")
            if area is dvc_transfer:
                rows += dvc_transfer.run(connection, size, workdir, files=args.files)
            else:
                rows += artifacts.run(connection, size, workdir)
    rows += deploy_area(args, env) if "deploy" in only else []
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
