"""`helm test` check, run in the MLflow image (it has the mlflow client, requests and paramiko).

Positive journeys, then attacks made with real clients that must fail:

1. MLflow (admin, the platform engineer's account, in-cluster only): log a run with an
   artifact, read it back; the run and its artifacts are deleted at the end, so production keeps
   no test runs and no test files.
2. MLflow accounts: a wrong password gets 401; the test reader (a `reader` account) can search
   but gets 403 creating an experiment; the metrics account reads /metrics and gets 403 on an
   experiment.
3. SFTP, the way DVC writes its remote (temporary name, rename, read back) with the test
   writer key (`dvc rw`); the test reader key (`dvc ro`) reads it and cannot write, rename or
   delete. Neither key reads host keys, sshd's configuration or authorized_keys, lists or
   writes outside the DVC area, or touches the artifact area; MLflow's key cannot reach the
   DVC area.

Every setting comes from SMOKE_* variables, secrets from *_FILE paths. A check whose settings
are absent (auth off, external SFTP, test accounts off) is skipped and says so.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

API = "/api/2.0/mlflow"


def setting(name: str) -> str:
    return os.environ.get(name, "").strip()


def read_file_setting(name: str) -> str:
    return Path(os.environ[name]).read_text().strip()


def csv_setting(name: str) -> list[str]:
    return [item for item in setting(name).split(",") if item]


def fail(message: str) -> None:
    raise SystemExit(f"FAIL: {message}")


def check_mlflow() -> tuple[str, str, str]:
    """Log and read back a run as the admin; returns (experiment id, run id, artifact path)."""
    os.environ["MLFLOW_TRACKING_URI"] = setting("SMOKE_TRACKING_URI")
    if setting("SMOKE_USERNAME"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = setting("SMOKE_USERNAME")
        os.environ["MLFLOW_TRACKING_PASSWORD"] = read_file_setting("SMOKE_PASSWORD_FILE")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # the image has no git
    import mlflow

    payload = f"smoke {uuid.uuid4()}\n"
    experiment = mlflow.set_experiment("helm-smoke-test")
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
        fail(f"the artifact read back differs: {read_back!r} != {payload!r}")
    finished = mlflow.get_run(run.info.run_id).info.status
    if finished != "FINISHED":
        fail(f"run {run.info.run_id} is {finished}, expected FINISHED")
    print(f"ok: MLflow run {run.info.run_id} logged and read back its artifact")
    # mlflow-artifacts:/1/<run>/artifacts (proxied) or sftp://user@host:port/data/artifacts/...
    uri = run.info.artifact_uri
    relative = uri.split(":", 1)[1].lstrip("/") if uri.startswith("mlflow-artifacts:") else ""
    if relative and setting("SMOKE_SFTP_ARTIFACTS_PATH"):
        artifact = f"{setting('SMOKE_SFTP_ARTIFACTS_PATH').rstrip('/')}/{relative}/smoke.txt"
    elif uri.startswith("sftp://"):
        artifact = f"{urlparse(uri).path}/smoke.txt"
    else:
        artifact = ""
    return experiment.experiment_id, run.info.run_id, artifact


def delete_run(run_id: str) -> None:
    """Delete the run's artifacts (through the server when proxied), then the run: a deleted run
    keeps its files, and a test that runs at every release must not fill the artifact store."""
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = mlflow.MlflowClient()
    get_artifact_repository(client.get_run(run_id).info.artifact_uri).delete_artifacts()
    if left := [f.path for f in client.list_artifacts(run_id)]:
        fail(f"run {run_id} still lists artifacts {left} after deleting them")
    client.delete_run(run_id)
    print(f"ok: deleted the test run {run_id} and its artifacts")


def check_accounts(experiment_id: str) -> None:
    import requests

    base = setting("SMOKE_TRACKING_URI").rstrip("/")

    def call(auth: tuple[str, str], method: str, path: str, **kwargs: object) -> int:
        return requests.request(method, base + path, auth=auth, timeout=60, **kwargs).status_code

    if not setting("SMOKE_USERNAME"):
        print("skip: MLflow authentication is off")
        return
    search = f"{API}/experiments/search"
    forged = (setting("SMOKE_USERNAME"), "not-the-password-" + uuid.uuid4().hex)
    stranger = ("nobody-" + uuid.uuid4().hex[:8], "not-a-password-" + uuid.uuid4().hex)
    for auth in (forged, stranger):
        status = call(auth, "GET", search, params={"max_results": 1})
        if status != 401:
            fail(f"a wrong password for {auth[0]!r} got {status}, expected 401")
    print("ok: wrong passwords and unknown users get 401")
    if setting("SMOKE_READER_USERNAME"):
        reader = (setting("SMOKE_READER_USERNAME"), read_file_setting("SMOKE_READER_PASSWORD_FILE"))
        status = call(reader, "GET", search, params={"max_results": 1})
        if status != 200:
            fail(f"the reader account got {status} searching experiments, expected 200")
        name = f"helm-test-forbidden-{uuid.uuid4().hex[:8]}"
        status = call(reader, "POST", f"{API}/experiments/create", json={"name": name})
        if status != 403:
            fail(f"the reader account got {status} creating an experiment, expected 403")
        print("ok: a reader reads and gets 403 creating an experiment")
    else:
        print("skip: no test reader account (tests.accounts is off)")
    if setting("SMOKE_METRICS_USERNAME"):
        metrics = (
            setting("SMOKE_METRICS_USERNAME"),
            read_file_setting("SMOKE_METRICS_PASSWORD_FILE"),
        )
        status = call(metrics, "GET", "/metrics")
        if status != 200:
            fail(f"the metrics account got {status} on /metrics, expected 200")
        params = {"experiment_id": experiment_id}
        status = call(metrics, "GET", f"{API}/experiments/get", params=params)
        if status != 403:
            fail(f"the metrics account got {status} reading an experiment, expected 403")
        print("ok: the metrics account reads /metrics and gets 403 on an experiment")
    else:
        print("skip: no metrics account (metrics or auth off)")


def sftp_session(key_file: str) -> Any:  # paramiko.SFTPClient; paramiko loads lazily
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(setting("SMOKE_SFTP_KNOWN_HOSTS_FILE"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        setting("SMOKE_SFTP_HOST"),
        port=int(setting("SMOKE_SFTP_PORT")),
        username=setting("SMOKE_SFTP_USERNAME"),
        key_filename=key_file,
        allow_agent=False,
        look_for_keys=False,
        timeout=30,
    )
    sftp = client.open_sftp()
    sftp.ssh_client = client  # keep the transport alive with the session
    return sftp


def must_be_denied(what: str, attack: Callable[[], object]) -> None:
    """The attack must fail with permission denied: a missing path proves nothing."""
    try:
        attack()
    except PermissionError:
        return
    except OSError as exc:
        fail(f"{what}: expected permission denied, got {exc!r}")
    fail(f"{what}: it succeeded")


def must_fail(what: str, attack: Callable[[], object]) -> None:
    """A write attack must fail; a read-only mount may answer "Failure" rather than denied."""
    try:
        attack()
    except OSError:
        return
    fail(f"{what}: it succeeded")


def dvc_like_write(sftp: Any, base: str) -> tuple[str, bytes]:
    """Upload under a temporary name and rename into files/md5/.., as DVC does."""
    data = f"dvc smoke {uuid.uuid4()}\n".encode()
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
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
    return final, data


def attacks_outside_the_area(sftp: Any, who: str, artifact: str) -> None:
    artifacts = setting("SMOKE_SFTP_ARTIFACTS_PATH")
    for path in csv_setting("SMOKE_SFTP_PROTECTED_FILES"):
        must_be_denied(f"{who} reads {path}", lambda p=path: sftp.open(p).read())
        must_fail(
            f"{who} overwrites {path}",
            lambda p=path: sftp.putfo(io.BytesIO(b"ssh-ed25519 AAAA attacker\n"), p),
        )
    for directory in csv_setting("SMOKE_SFTP_OUTSIDE_DIRS"):
        must_be_denied(f"{who} lists {directory}", lambda d=directory: sftp.listdir(d))
    planted = [f"/tmp/planted-{uuid.uuid4().hex[:6]}"]
    if artifacts:
        planted.append(f"{artifacts.rstrip('/')}/planted-{uuid.uuid4().hex[:6]}")
        must_be_denied(f"{who} makes a directory in {artifacts}", lambda: sftp.mkdir(planted[-1]))
    for target in planted:
        must_be_denied(f"{who} writes {target}", lambda t=target: sftp.putfo(io.BytesIO(b"x"), t))
    if artifact:
        must_be_denied(f"{who} reads the run's artifact", lambda: sftp.open(artifact).read())
        must_be_denied(f"{who} deletes the run's artifact", lambda: sftp.remove(artifact))


def check_sftp(artifact: str) -> None:
    base = setting("SMOKE_SFTP_DVC_PATH").rstrip("/")
    writer_key = setting("SMOKE_SFTP_WRITER_KEY_FILE")
    reader_key = setting("SMOKE_SFTP_READER_KEY_FILE")
    if not writer_key:
        # An external SFTP server: the DVC-like round trip with MLflow's own key, no attacks.
        sftp = sftp_session(setting("SMOKE_SFTP_KEY_FILE"))
        try:
            final, data = dvc_like_write(sftp, base)
            with sftp.open(final, "rb") as handle:
                read_back = handle.read()
            sftp.remove(final)
        finally:
            sftp.ssh_client.close()
        if read_back != data:
            fail("the file read back over SFTP differs from the one written")
        print(f"ok: SFTP wrote, renamed and read back {final}")
        print("skip: SFTP isolation checks (no test keys: external SFTP or tests.accounts off)")
        return
    writer = sftp_session(writer_key)
    try:
        final, data = dvc_like_write(writer, base)
        print(f"ok: the dvc writer wrote and renamed {final}")
        reader = sftp_session(reader_key)
        try:
            with reader.open(final, "rb") as handle:
                if handle.read() != data:
                    fail("the dvc reader read back different bytes")
            print("ok: the dvc reader reads what the writer wrote")
            for what, attack in (
                (
                    "writes a file",
                    lambda: reader.putfo(io.BytesIO(b"x"), f"{base}/ro-{uuid.uuid4().hex}"),
                ),
                ("overwrites a file", lambda: reader.open(final, "w").write(b"overwritten")),
                ("renames a file", lambda: reader.posix_rename(final, f"{final}.renamed")),
                ("deletes a file", lambda: reader.remove(final)),
                ("makes a directory", lambda: reader.mkdir(f"{base}/ro-{uuid.uuid4().hex}")),
            ):
                must_be_denied(f"the dvc reader {what}", attack)
            with reader.open(final, "rb") as handle:
                if handle.read() != data:
                    fail("the dvc reader changed a file")
            print("ok: the dvc reader cannot write, rename or delete")
            attacks_outside_the_area(reader, "the dvc reader", artifact)
        finally:
            reader.ssh_client.close()
        attacks_outside_the_area(writer, "the dvc writer", artifact)
        print("ok: DVC keys reach no host key, configuration, other directory or the artifact area")
        writer.remove(final)
    finally:
        writer.ssh_client.close()
    mlflow_key = setting("SMOKE_SFTP_KEY_FILE")
    if mlflow_key:
        sftp = sftp_session(mlflow_key)
        try:
            must_be_denied("MLflow's key lists the DVC area", lambda: sftp.listdir(base))
        finally:
            sftp.ssh_client.close()
        print("ok: MLflow's key cannot reach the DVC area")


def main() -> int:
    experiment_id, run_id, artifact = check_mlflow()
    try:
        check_accounts(experiment_id)
        check_sftp(artifact)
    finally:
        delete_run(run_id)
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
