"""Artifact area of `make bench`: one file uploaded and downloaded through the stock MLflow client
(proxied through this stack's tracking server to its SFTP server) beside raw OpenSSH `sftp`
put/get of the same file to the same SFTP server with the person's key."""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from contextlib import redirect_stdout
from pathlib import Path

from bench.report import Row, at_least
from bench.tracking_throughput import connection_env
from bench.transfer import MIB, remote_root, remove_remote, sftp, timed, write_random

AREA = "artifacts"
RAW = "raw OpenSSH `sftp`"
# Issue 14: proxied transfers at least this share of raw sftp's speed, both ways.
GOAL = at_least(0.8)


def run(connection: Mapping[str, str], size_mib: int, workdir: Path) -> list[Row]:
    source = workdir / "artifact" / f"blob-{size_mib}MiB.bin"
    write_random(source, size_mib * MIB)
    with connection_env(connection):
        import mlflow

        experiment = mlflow.MlflowClient().create_experiment(f"bench-artifacts-{uuid.uuid4()}")
        with redirect_stdout(io.StringIO()), mlflow.start_run(experiment_id=experiment) as active:
            upload = timed(lambda: mlflow.log_artifact(str(source)))
        target = workdir / f"artifact-down-{size_mib}"
        download = timed(
            lambda: mlflow.artifacts.download_artifacts(
                run_id=active.info.run_id, artifact_path=source.name, dst_path=str(target)
            )
        )
    if (target / source.name).stat().st_size != source.stat().st_size:
        raise RuntimeError("the artifact came back with another size")

    remote = f"{remote_root(connection)}/bench-raw-{uuid.uuid4().hex[:8]}"
    sftp(connection, f"mkdir {remote}\n")
    try:
        put = timed(lambda: sftp(connection, f"put {source} {remote}/{source.name}\n"))
        back = workdir / f"raw-down-{size_mib}" / source.name
        back.parent.mkdir()
        get = timed(lambda: sftp(connection, f"get {remote}/{source.name} {back}\n"))
    finally:
        remove_remote(connection, remote)
    if back.stat().st_size != source.stat().st_size:
        raise RuntimeError("sftp get returned another size")
    print(f"  {size_mib} MiB: mlflow up {upload:.1f} s / down {download:.1f} s, "
          f"sftp put {put:.1f} s / get {get:.1f} s")  # fmt: skip
    return [
        Row(AREA, f"{size_mib} MiB upload: `mlflow.log_artifact` (proxied)", "MiB/s",
            size_mib / upload, RAW + " put", size_mib / put, goal=GOAL),
        Row(AREA, f"{size_mib} MiB download: `mlflow.artifacts.download_artifacts`", "MiB/s",
            size_mib / download, RAW + " get", size_mib / get, goal=GOAL),
    ]  # fmt: skip
