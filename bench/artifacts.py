"""Artifact area of `make bench`: one file uploaded and downloaded through the stock MLflow client
(proxied through this stack's tracking server to its SFTP server) beside raw OpenSSH `sftp`
put/get of the same file to the same SFTP server with the person's key, each several times in
turn."""

from __future__ import annotations

import shutil
import statistics
import uuid
from collections.abc import Mapping
from pathlib import Path

from bench.report import Row, at_least
from bench.tracking_throughput import connection_env
from bench.transfer import MIB, remote_root, remove_remote, sftp, timed, write_random

AREA = "artifacts"
RAW = "raw OpenSSH `sftp`"
# Issue 14: proxied transfers at least this share of raw sftp's speed, both ways.
GOAL = at_least(0.8)


# Each size is sent this many times both ways, proxied and raw taking turns at going first;
# the table gives the median of each. On a 2-core VM one transfer alone moved by up to 2x between
# runs (the disk behind the SFTP server's volume, other tenants), in either column.
REPEATS = 3


def run(
    connection: Mapping[str, str], size_mib: int, workdir: Path, repeats: int = REPEATS
) -> list[Row]:
    source = workdir / "artifact" / f"blob-{size_mib}MiB.bin"
    write_random(source, size_mib * MIB)
    seconds: dict[str, list[float]] = {"up": [], "down": [], "put": [], "get": []}
    remote = f"{remote_root(connection)}/bench-raw-{uuid.uuid4().hex[:8]}"
    with connection_env(connection):
        import mlflow

        client = mlflow.MlflowClient()
        experiment = client.create_experiment(f"bench-artifacts-{uuid.uuid4()}")
        run_id = client.create_run(experiment).info.run_id

        def proxied(turn: int) -> None:
            # The same artifact name every turn: each upload replaces the one before.
            seconds["up"].append(timed(lambda: client.log_artifact(run_id, str(source))))
            target = workdir / f"artifact-down-{size_mib}-{turn}"
            seconds["down"].append(
                timed(
                    lambda: mlflow.artifacts.download_artifacts(
                        run_id=run_id, artifact_path=source.name, dst_path=str(target)
                    )
                )
            )
            if (target / source.name).stat().st_size != source.stat().st_size:
                raise RuntimeError("the artifact came back with another size")
            shutil.rmtree(target)

        def raw(turn: int) -> None:
            seconds["put"].append(
                timed(lambda: sftp(connection, f"put {source} {remote}/{source.name}\n"))
            )
            back = workdir / f"raw-down-{size_mib}-{turn}" / source.name
            back.parent.mkdir()
            seconds["get"].append(
                timed(lambda: sftp(connection, f"get {remote}/{source.name} {back}\n"))
            )
            if back.stat().st_size != source.stat().st_size:
                raise RuntimeError("sftp get returned another size")
            shutil.rmtree(back.parent)

        sftp(connection, f"mkdir {remote}\n")
        try:
            for turn in range(repeats):
                for side in (proxied, raw) if turn % 2 == 0 else (raw, proxied):
                    side(turn)
        finally:
            remove_remote(connection, remote)
            client.set_terminated(run_id)
    upload, download, put, get = (
        statistics.median(seconds[k]) for k in ("up", "down", "put", "get")
    )
    print(f"  {size_mib} MiB, median of {repeats}: mlflow up {upload:.1f} s / "
          f"down {download:.1f} s, sftp put {put:.1f} s / get {get:.1f} s")  # fmt: skip
    return [
        Row(AREA, f"{size_mib} MiB upload: `mlflow.log_artifact` (proxied)", "MiB/s",
            size_mib / upload, RAW + " put", size_mib / put, goal=GOAL),
        Row(AREA, f"{size_mib} MiB download: `mlflow.artifacts.download_artifacts`", "MiB/s",
            size_mib / download, RAW + " get", size_mib / get, goal=GOAL),
    ]  # fmt: skip
