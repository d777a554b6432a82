"""`helm test` smoke check, run in the MLflow image (it has the mlflow client and paramiko).

1. MLflow: log in, log a run with an artifact, read the artifact back.
2. SFTP, the way DVC writes its remote: upload under a temporary name, rename into the
   content-addressed path, read it back, clean up.
Every setting comes from SMOKE_* variables; secrets from *_FILE paths.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import uuid
from pathlib import Path


def read_file_setting(name: str) -> str:
    return Path(os.environ[name]).read_text().strip()


def check_mlflow() -> None:
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["SMOKE_TRACKING_URI"]
    if os.environ.get("SMOKE_USERNAME"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ["SMOKE_USERNAME"]
        os.environ["MLFLOW_TRACKING_PASSWORD"] = read_file_setting("SMOKE_PASSWORD_FILE")
    import mlflow

    payload = f"smoke {uuid.uuid4()}\n"
    mlflow.set_experiment("helm-smoke-test")
    with tempfile.TemporaryDirectory() as work, mlflow.start_run() as run:
        source = Path(work) / "smoke.txt"
        source.write_text(payload)
        mlflow.log_param("check", "helm-test")
        mlflow.log_artifact(str(source))
    with tempfile.TemporaryDirectory() as work:
        local = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="smoke.txt", dst_path=work
        )
        read_back = Path(local).read_text()
    if read_back != payload:
        raise SystemExit(f"FAIL: the artifact read back differs: {read_back!r} != {payload!r}")
    finished = mlflow.get_run(run.info.run_id).info.status
    if finished != "FINISHED":
        raise SystemExit(f"FAIL: run {run.info.run_id} is {finished}, expected FINISHED")
    print(f"ok: MLflow run {run.info.run_id} logged and read back its artifact")


def check_sftp() -> None:
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(os.environ["SMOKE_SFTP_KNOWN_HOSTS_FILE"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        os.environ["SMOKE_SFTP_HOST"],
        port=int(os.environ["SMOKE_SFTP_PORT"]),
        username=os.environ["SMOKE_SFTP_USERNAME"],
        key_filename=os.environ["SMOKE_SFTP_KEY_FILE"],
        allow_agent=False,
        look_for_keys=False,
        timeout=30,
    )
    try:
        sftp = client.open_sftp()
        data = f"dvc smoke {uuid.uuid4()}\n".encode()
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        base = os.environ["SMOKE_SFTP_DVC_PATH"].rstrip("/")
        directory = f"{base}/files/md5/{digest[:2]}"
        for part in (f"{base}/files", f"{base}/files/md5", directory):
            try:
                sftp.mkdir(part)
            except OSError:
                sftp.stat(part)  # it exists already; anything else raises here
        final = f"{directory}/{digest[2:]}"
        temporary = f"{final}.{uuid.uuid4().hex}.tmp"
        with sftp.open(temporary, "wb") as handle:
            handle.write(data)
        sftp.posix_rename(temporary, final)
        with sftp.open(final, "rb") as handle:
            read_back = handle.read()
        sftp.remove(final)
    finally:
        client.close()
    if read_back != data:
        raise SystemExit("FAIL: the file read back over SFTP differs from the one written")
    print(f"ok: SFTP wrote, renamed and read back {final}")


def main() -> int:
    check_mlflow()
    check_sftp()
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
