"""Measure `make backup` (full and incremental) and `make restore` of a big Docker-target stack.

Usage: .venv/bin/python bench/backup_restore.py ENV [--runs 10000] [--artifact-mib 1024]

ENV must be deployed (`make deploy ENV=…`) and disposable: the bench adds an experiment with
RUNS finished runs (10 metrics and 5 params each, inserted in bulk with SQL, which is faster
than the API and gives the same rows) and ARTIFACT_MIB of random artifacts (10 MiB files on
the SFTP volume), then times a full backup, an incremental one after one more artifact, a
disaster (tracking tables and artifacts deleted) and `make restore`, and checks through the
MLflow API and by SHA-256 that every run and artifact came back. It prints the figures.

--upgrade-from VERSION: ENV runs that older MLflow release (`make deploy ENV=…
MLFLOW_VERSION=VERSION`); the backup and restore stay on it, then `make upgrade` to the pinned
release is timed. --postgresql-major N then times `make upgrade POSTGRESQL_MAJOR=N` (ENV on an
older major). Each is checked the same way.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "scripts"), str(REPO_ROOT)]

from mlopskit.docker_env import PG_SHELL, docker_env  # noqa: E402
from mlopskit.environments import check_environment, parse_connection_env  # noqa: E402

from bench.run_all import pick_person  # noqa: E402

FILL_SQL = """
INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status,
                  start_time, end_time, source_version, lifecycle_stage, artifact_uri,
                  experiment_id)
SELECT md5(:'tag' || i), 'bench-' || i, 'LOCAL', 'bench', '', 'admin', 'FINISHED',
       1764400000000 + i, 1764400001000 + i, '', 'active',
       'mlflow-artifacts:/' || :'exp' || '/' || md5(:'tag' || i) || '/artifacts', :'exp'::int
FROM generate_series(1, :'runs'::int) AS i;
INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)
SELECT 'm' || k, random(), 1764400000000 + i, md5(:'tag' || i), 0, false
FROM generate_series(1, :'runs'::int) AS i, generate_series(1, 10) AS k;
INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)
SELECT key, value, timestamp, step, is_nan, run_uuid FROM metrics
WHERE run_uuid IN (SELECT run_uuid FROM runs WHERE experiment_id = :'exp'::int);
INSERT INTO params (key, value, run_uuid)
SELECT 'p' || k, (i * k)::text, md5(:'tag' || i)
FROM generate_series(1, :'runs'::int) AS i, generate_series(1, 5) AS k;
"""


def sh(*args: str, stdin: str | None = None) -> str:
    """Run a command; return its stdout and stderr together."""
    result = subprocess.run(
        list(args), input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:6])} failed:\n{result.stdout[-4000:]}")
    return result.stdout


def timed_make(*args: str) -> tuple[float, str]:
    """`make ARGS`, and the seconds it took. MLFLOW_VERSION of this process's environment
    (--upgrade-from) reaches the make command line, so the stack stays on that release."""
    if version := os.environ.get("MLFLOW_VERSION"):
        args = (*args, f"MLFLOW_VERSION={version}")
    started = time.monotonic()
    out = sh("make", "--no-print-directory", "-C", str(REPO_ROOT), *args)
    return time.monotonic() - started, out


def artifact_sums(sftp: str) -> str:
    return sh(
        "docker", "exec", sftp, "sh", "-c",
        "cd /data/artifacts && find . -type f -exec sha256sum {} + | sort",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--artifact-mib", type=int, default=1024)
    parser.add_argument("--person", default="", help="whose connection.env (default: an editor)")
    parser.add_argument(
        "--upgrade-from", default="", help="ENV runs this MLflow release; then `make upgrade`"
    )
    parser.add_argument(
        "--postgresql-major", default="", help="then time `make upgrade POSTGRESQL_MAJOR=N`"
    )
    args = parser.parse_args()
    if args.upgrade_from:
        os.environ["MLFLOW_VERSION"] = args.upgrade_from
    else:
        os.environ.pop("MLFLOW_VERSION", None)
    env = check_environment(args.env)
    denv = docker_env(env)
    person = pick_person(env, args.person)
    connection = parse_connection_env(env.connection_file(person).read_text())
    os.environ.update(connection)
    import mlflow

    client = mlflow.MlflowClient()
    tag = uuid.uuid4().hex[:8]
    experiment = client.create_experiment(f"bench-backup-{tag}")
    postgresql, sftp = denv.container("postgresql"), denv.container("sftp")
    psql = ["docker", "exec", "-i", postgresql, "sh", "-c", PG_SHELL, "sh", "psql", "-qX",
            "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "mlflow"]  # fmt: skip
    started = time.monotonic()
    sh(*psql, "-v", f"tag={tag}", "-v", f"exp={experiment}", "-v", f"runs={args.runs}",
       stdin=FILL_SQL)  # fmt: skip
    files = max(1, args.artifact_mib // 10)
    fill = (
        'for i in $(seq 1 "$1"); do d=/data/artifacts/$2/bench/$i; mkdir -p "$d" && '
        'head -c 10485760 /dev/urandom > "$d/blob.bin"; done'
    )
    sh("docker", "exec", sftp, "sh", "-c", fill, "sh", str(files), experiment)
    print(f"filled {args.runs} runs and {files * 10} MiB in {time.monotonic() - started:.0f}s")

    full, out = timed_make("backup", f"ENV={env.name}")
    pause = re.search(r"paused for ([\d.]+)s", out)
    extra = f"head -c 10485760 /dev/urandom > /data/artifacts/{experiment}/bench/1/extra.bin"
    sh("docker", "exec", sftp, "sh", "-c", extra)
    incremental, out2 = timed_make("backup", f"ENV={env.name}")
    pause2 = re.search(r"paused for ([\d.]+)s", out2)
    before = artifact_sums(sftp)
    runs_before = len(client.search_runs([experiment], max_results=50_000))

    sh(*psql, stdin="DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION mlflow;")
    sh("docker", "exec", sftp, "sh", "-c", "rm -rf /data/artifacts/*")
    restore, out3 = timed_make("restore", f"ENV={env.name}", "YES=1")
    data_part = re.search(r"data replaced in ([\d.]+)s", out3)
    client = mlflow.MlflowClient()
    runs_after = len(client.search_runs([experiment], max_results=50_000))
    same = artifact_sums(sftp) == before
    print(f"full backup: {full:.1f}s (MLflow paused {pause.group(1) if pause else '?'}s)")
    print(f"incremental backup (+10 MiB): {incremental:.1f}s "
          f"(MLflow paused {pause2.group(1) if pause2 else '?'}s)")  # fmt: skip
    print(
        f"restore: {restore:.1f}s in all; checks, safety backup and data "
        f"{data_part.group(1) if data_part else '?'}s, the rest is the deploy that migrates "
        "and starts MLflow"
    )
    print(f"runs before/after: {runs_before}/{runs_after}; artifacts identical: {same}")
    if runs_after != runs_before or runs_before != args.runs or not same:
        sys.exit("the restore lost data")

    upgrades = [[]] if args.upgrade_from else []
    upgrades += [[f"POSTGRESQL_MAJOR={args.postgresql_major}"]] if args.postgresql_major else []
    os.environ.pop("MLFLOW_VERSION", None)  # the upgrades go to the pinned release
    for extra_args in upgrades:
        version = server_version(connection)
        seconds, out4 = timed_make("upgrade", f"ENV={env.name}", *extra_args)
        moved = re.search(r"tables restored with the same row counts in (\d+)s", out4)
        runs_now = len(mlflow.MlflowClient().search_runs([experiment], max_results=50_000))
        same = artifact_sums(sftp) == before
        what = " ".join(["make upgrade", *extra_args])
        print(
            f"{what}: {seconds:.1f}s (MLflow {version} -> {server_version(connection)}"
            + (f"; the PostgreSQL data move {moved.group(1)}s" if moved else "")
            + f"); runs {runs_now}, artifacts identical: {same}"
        )
        if runs_now != runs_before or not same:
            sys.exit(f"{what} lost data")


def server_version(connection: dict[str, str]) -> str:
    import requests

    response = requests.get(
        f"{connection['MLFLOW_TRACKING_URI']}/version",
        auth=(connection["MLFLOW_TRACKING_USERNAME"], connection["MLFLOW_TRACKING_PASSWORD"]),
        timeout=30,
    )
    response.raise_for_status()
    return response.text.strip()


if __name__ == "__main__":
    main()
