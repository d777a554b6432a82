"""Artifacts mode `sftp`: people write artifacts straight to sftp:// with the client pieces
the deploy writes for them (key, known_hosts, ssh_config, dependency pins) and stock MLflow.
An editor's key may write the artifact area; a reader's may only read it."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
import yaml
from mlopskit.environments import parse_connection_env
from mlopskit.versions import image_set

from tests.e2e.e2e_support import REPO_ROOT, ansible_playbook, docker_names

ENV_NAME = "e2e-sftp"
PREFIX = "mlops-e2e-sftp"
BUILD_DIR = REPO_ROOT / "build" / ENV_NAME
CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, mlflow
    with mlflow.start_run() as run:
        mlflow.log_artifact(sys.argv[1], artifact_path="direct")
    print("RUN=" + run.info.run_id + " " + run.info.experiment_id + " " + run.info.artifact_uri)
    """
)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Iterator[Path]:
    config = tmp_path_factory.mktemp("deploy-e2e-sftp")
    (config / "inventory.yml").write_text((REPO_ROOT / "deploy/e2e/inventory.yml").read_text())
    settings = {
        "mlops_target": "docker",
        "mlops_docker_name_prefix": PREFIX,
        "mlops_docker_mlflow_port": 18800,
        "mlops_docker_sftp_port": 18822,
        "mlops_docker_artifacts_mode": "sftp",
        "mlops_docker_mlflow_workers": 1,
        "mlops_docker_state_dir": str(config / "state"),
    }
    (config / "settings.yml").write_text(yaml.safe_dump(settings))
    people = [
        {"name": "alice", "mlflow": "editor", "dvc": "write"},
        {"name": "rita", "mlflow": "reader", "dvc": "read"},
    ]
    (config / "people.yml").write_text(yaml.safe_dump({"mlops_people": people}))

    def playbook(name: str, *extra: str):
        return ansible_playbook(
            name, config / "inventory.yml", config / "settings.yml", ENV_NAME, *extra
        )

    # What an interrupted earlier run left (containers, volumes with other passwords) goes first.
    leftover = playbook("destroy.yml", "-e", "mlops_purge=true")
    assert leftover.returncode == 0, leftover.explain()
    result = playbook("deploy.yml")
    try:
        assert result.returncode == 0, result.explain()
        yield config
    finally:
        if os.environ.get("MLOPS_E2E_KEEP") != "1":
            purged = playbook("destroy.yml", "-e", "mlops_purge=true")
            assert purged.returncode == 0, purged.explain()
            assert docker_names("volume", f"io.mlops-kit.env={ENV_NAME}") == []
            assert not BUILD_DIR.exists()


def test_client_pieces_are_written(deployed):
    client = BUILD_DIR / "client"
    lines = (client / "requirements.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if not line.startswith("#"))
    # Exactly these, whole (`pip install -r` takes every line): no other package of the locks.
    assert set(pins) == {"mlflow", "pysftp", "paramiko", "dvc", "dvc-ssh"}, lines
    assert pins["mlflow"] == image_set().mlflow_version
    assert pins["pysftp"] == "0.2.9"
    assert pins["paramiko"].startswith("3."), "pysftp breaks with paramiko 4"
    assert all(re.fullmatch(r"[0-9][0-9a-z.]*", version) for version in pins.values()), pins
    config = (BUILD_DIR / "people" / "alice" / "ssh_config").read_text()
    assert "Port 18822" in config
    assert str(BUILD_DIR / "people" / "alice" / "id_rsa") in config
    known_hosts = (BUILD_DIR / "known_hosts").read_text().splitlines()
    assert any(line.startswith("127.0.0.1 ssh-rsa ") for line in known_hosts), "pysftp needs it"


def person_connection(name: str) -> dict[str, str]:
    return parse_connection_env((BUILD_DIR / "people" / name / "connection.env").read_text())


def sftp_as(connection: dict[str, str]) -> paramiko.SSHClient:
    ssh = paramiko.SSHClient()
    ssh.load_host_keys(connection["SFTP_KNOWN_HOSTS"])
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(
        "127.0.0.1",
        port=18822,
        username="mlops",
        key_filename=connection["SFTP_PRIVATE_KEY"],
        look_for_keys=False,
        allow_agent=False,
        timeout=15,
    )
    return ssh


def test_stock_client_writes_artifacts_straight_to_sftp(deployed, tmp_path):
    connection = person_connection("alice")
    # What the docs tell a data scientist to do with the client pieces.
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copy(BUILD_DIR / "people" / "alice" / "ssh_config", home / ".ssh" / "config")
    shutil.copy(BUILD_DIR / "known_hosts", home / ".ssh" / "known_hosts")
    payload = tmp_path / "direct.bin"
    payload.write_bytes(os.urandom(3 * 1024 * 1024))
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(payload)],
        env={**os.environ, **connection, "HOME": str(home), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [row for row in result.stdout.splitlines() if row.startswith("RUN=")]
    run_id, experiment_id, artifact_uri = line[4:].split()
    assert artifact_uri.startswith("sftp://mlops@127.0.0.1:18822/data/artifacts/"), artifact_uri

    remote = f"/data/artifacts/{experiment_id}/{run_id}/artifacts/direct/direct.bin"
    # A reader's key reads the artifact area and changes nothing in it.
    ssh = sftp_as(person_connection("rita"))
    try:
        session = ssh.open_sftp()
        with session.open(remote, "rb") as handle:
            handle.prefetch()
            stored = handle.read()
        for attack in (
            lambda: session.remove(remote),
            lambda: session.putfo(io.BytesIO(b"forged"), remote),
            lambda: session.mkdir(f"/data/artifacts/{experiment_id}/forged"),
        ):
            with pytest.raises(PermissionError):
                attack()
    finally:
        ssh.close()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(payload.read_bytes()).hexdigest()
