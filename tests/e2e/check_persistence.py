"""Check that what a smoke run recorded (build/<env>/smoke-manifest.json) is still there.

Run with connection.env in the environment: python check_persistence.py MANIFEST. Prints
"persistence ok: ..." and exits 0, or names the first missing thing and exits 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import mlflow
import paramiko


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_mlflow(manifest: dict) -> None:
    client = mlflow.MlflowClient()
    for name in manifest["experiments"]:
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None, f"experiment {name} is gone"
    for entry in manifest["runs"]:
        run = client.get_run(entry["run_id"])
        assert run.info.status == "FINISHED", f"run {entry['run_id']} is {run.info.status}"
        if "artifact" in entry:
            with tempfile.TemporaryDirectory() as scratch:
                local = mlflow.artifacts.download_artifacts(
                    run_id=entry["run_id"], artifact_path=entry["artifact"], dst_path=scratch
                )
                assert sha256_of(Path(local)) == entry["sha256"], f"{entry['artifact']} changed"
    for model in manifest["models"]:
        version = client.get_model_version_by_alias(model["name"], model["alias"])
        assert version.version == model["version"], f"{model['name']}@{model['alias']} moved"


def check_dvc_objects(manifest: dict) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(os.environ["SFTP_KNOWN_HOSTS"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        os.environ["SFTP_HOST"],
        port=int(os.environ["SFTP_PORT"]),
        username=os.environ["SFTP_USERNAME"],
        key_filename=os.environ["SFTP_PRIVATE_KEY"],
        look_for_keys=False,
        allow_agent=False,
        timeout=15,
    )
    try:
        sftp = client.open_sftp()
        for relative in manifest["dvc_objects"]:
            sftp.stat(f"/data/dvc/{relative}")
    finally:
        client.close()


def main(manifest_path: str) -> int:
    manifest = json.loads(Path(manifest_path).read_text())
    try:
        check_mlflow(manifest)
        check_dvc_objects(manifest)
    except (AssertionError, OSError, mlflow.exceptions.MlflowException) as exc:
        print(f"persistence FAILED: {exc}", file=sys.stderr)
        return 1
    print(
        f"persistence ok: {len(manifest['experiments'])} experiments, "
        f"{len(manifest['runs'])} runs, "
        f"{len(manifest['models'])} models, {len(manifest['dvc_objects'])} DVC objects"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
