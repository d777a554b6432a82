"""Check that what a smoke run recorded (build/<env>/smoke-manifest.json) is still there.

Run with a person's connection.env in the environment: python check_persistence.py MANIFEST. Prints
"persistence ok: ..." and exits 0, or names the first missing thing and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import mlflow

# A script of its own (a fresh process, like a user's), yet it reuses the repository's helpers.
REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "scripts")]

from tests.smoke.smoke_support import connect_sftp, sha256_of  # noqa: E402


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
    client = connect_sftp(os.environ)
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
