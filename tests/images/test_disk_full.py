"""A full artifact volume: uploads fail loudly, nothing truncated is left under a real name,
the services stay up, and once space is freed the same clients work again without a restart.

The SFTP volume here is a 24 MiB tmpfs, so a 40 MiB upload runs out of space half-way, as a
full disk does. The clients are the stock ones: MLflow's (artifacts proxied through the server)
and DVC's (straight to SFTP with a person's key).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.images.conftest import Mlflow, Sftp, make_sftp, start_mlflow
from tests.support.docker import Sandbox

pytestmark = pytest.mark.docker

VOLUME_MIB = 24
TOO_BIG = 40 * 1024 * 1024
SMALL = 256 * 1024
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def small_sftp(sandbox: Sandbox, images, tmp_path_factory) -> Sftp:
    volume = sandbox.volume(
        "sftp-small", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
        "--opt", f"o=size={VOLUME_MIB}m,mode=0770",
    )  # fmt: skip
    return make_sftp(sandbox, images, tmp_path_factory.mktemp("sftp-small"), volume)


@pytest.fixture(scope="module")
def server(sandbox, images, postgres, small_sftp, tmp_path_factory) -> Mlflow:
    return start_mlflow(sandbox, images, postgres, small_sftp, tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def client(server: Mlflow, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.auth[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.auth[1])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


def stored_files(sftp: Sftp, area: str) -> dict[str, int]:
    """path -> size of every file in an area, as the SFTP server's disk holds it."""
    out = sftp.container.exec("find", f"/data/{area}", "-type", "f", "-printf", "%P %s\\n")
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in out.splitlines()}


def free_space(sftp: Sftp, area: str, keep: set[str]) -> None:
    """What an operator does: delete files (here all but ``keep``) from the full volume."""
    for path in set(stored_files(sftp, area)) - keep:
        sftp.container.exec("rm", "-f", f"/data/{area}/{path}")


def test_a_failed_artifact_upload_leaves_no_truncated_artifact(
    client: MlflowClient, server: Mlflow, small_sftp: Sftp, tmp_path: Path
) -> None:
    experiment = client.create_experiment("disk-full")
    run = client.create_run(experiment).info.run_id
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(SMALL))
    client.log_artifact(run, str(small))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(TOO_BIG))
    # The server answers 500 (the stock client retries, then gives up): loud, not silent.
    with pytest.raises(MlflowException, match="500"):
        client.log_artifact(run, str(big))

    listed = {a.path: a.file_size for a in client.list_artifacts(run)}
    assert listed == {"small.bin": SMALL}, f"a truncated artifact is listed: {listed}"
    on_disk = stored_files(small_sftp, "artifacts")
    assert not [p for p in on_disk if p.endswith("big.bin")], on_disk
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200

    # Space back (here the failed upload's leftovers, if any, and nothing else): uploads work
    # again through the same server, with no restart.
    free_space(small_sftp, "artifacts", keep=set(on_disk))
    again = tmp_path / "again.bin"
    again.write_bytes(os.urandom(SMALL))
    client.log_artifact(run, str(again))
    assert {a.path for a in client.list_artifacts(run)} == {"small.bin", "again.bin"}


def test_an_upload_that_runs_out_of_space_in_its_last_bytes_is_refused_too(
    client: MlflowClient, small_sftp: Sftp, tmp_path: Path
) -> None:
    # Only the file's last writes fail: the ones a client that pipelines its writes (paramiko)
    # answers last, and would drop when it closes the file.
    run = client.create_run(client.create_experiment("disk-full-at-the-end")).info.run_id
    free = int(small_sftp.container.exec("df", "-B1", "--output=avail", "/data").split()[-1])
    nearly = tmp_path / "nearly.bin"
    nearly.write_bytes(os.urandom(free + 64 * 1024))
    with pytest.raises(MlflowException, match="500"):
        client.log_artifact(run, str(nearly))
    assert client.list_artifacts(run) == []
    on_disk = stored_files(small_sftp, "artifacts")
    assert not [p for p in on_disk if p.endswith("nearly.bin")], on_disk  # partial names too


@pytest.fixture
def dvc_repo(small_sftp: Sftp, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = small_sftp.container.exec("cat", "/data/.host-keys/ssh_host_ecdsa_key.pub").split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{small_sftp.port} {key[0]} {key[1]}\n")
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    repo = tmp_path / "repo"
    repo.mkdir()
    url = f"ssh://mlops@127.0.0.1:{small_sftp.port}/data/dvc"
    for args in (
        ["dvc", "init", "-q", "--no-scm"],
        ["dvc", "remote", "add", "-d", "store", url],
        ["dvc", "remote", "modify", "--local", "store", "keyfile", str(small_sftp.writer.private)],
    ):
        subprocess.run(args, cwd=repo, env=env, check=True, capture_output=True, timeout=120)
    return repo, env


def dvc(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )


def test_a_failed_dvc_push_leaves_no_object_that_a_pull_would_trust(
    dvc_repo: tuple[Path, dict[str, str]], small_sftp: Sftp
) -> None:
    repo, env = dvc_repo
    before = stored_files(small_sftp, "dvc")
    (repo / "big.bin").write_bytes(os.urandom(TOO_BIG))
    assert dvc(repo, env, "add", "-q", "big.bin").returncode == 0
    pushed = dvc(repo, env, "push")
    assert pushed.returncode != 0, f"dvc push reported success on a full disk:\n{pushed.stdout}"
    # DVC trusts an object in the remote by its name alone: a truncated one under its final
    # name would be skipped by the next push and handed out by every pull.
    objects = [p for p in stored_files(small_sftp, "dvc") if p.startswith("files/md5/")]
    sizes = stored_files(small_sftp, "dvc")
    assert not [p for p in objects if sizes[p] != TOO_BIG], f"truncated objects: {sizes}"

    free_space(small_sftp, "dvc", keep=set(before))
    (repo / "big.bin").unlink()
    (repo / "small.bin").write_bytes(os.urandom(SMALL))
    assert dvc(repo, env, "add", "-q", "small.bin").returncode == 0
    retried = dvc(repo, env, "push", "small.bin.dvc")
    assert retried.returncode == 0, retried.stderr
    status = dvc(repo, env, "status", "--cloud", "small.bin.dvc")
    assert "in sync" in status.stdout, status.stdout
