"""A broken deploy/<env> fails before anything changes, with a message naming the setting."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.e2e_support import REPO_ROOT, ansible_playbook, docker_names, make

BAD_ENV = "e2e-bad"
BAD_PREFIX = "mlops-e2e-bad"


@pytest.fixture
def config_dir(tmp_path: Path) -> Iterator[Path]:
    """A scratch deploy/<env> directory: the e2e inventory and valid settings to break.

    Should a check fail to stop the deploy, whatever it created is removed afterwards.
    """
    (tmp_path / "inventory.yml").write_text((REPO_ROOT / "deploy/e2e/inventory.yml").read_text())
    yield tmp_path
    label = f"io.mlops-kit.env={BAD_ENV}"
    for kind, remove in (
        ("container", ["rm", "-f"]),
        ("network", ["network", "rm"]),
        ("volume", ["volume", "rm", "-f"]),
    ):
        if names := docker_names(kind, label):
            subprocess.run(["docker", *remove, *names], check=False, capture_output=True)
    shutil.rmtree(REPO_ROOT / "build" / BAD_ENV, ignore_errors=True)


def settings_with(config_dir: Path, **overrides: object) -> Path:
    settings = {
        "mlops_target": "docker",
        "mlops_docker_name_prefix": BAD_PREFIX,
        "mlops_docker_bind_address": "127.0.0.1",
        "mlops_docker_mlflow_port": 18600,
        "mlops_docker_sftp_port": 18622,
        "mlops_docker_state_dir": str(config_dir / "state"),
        **overrides,
    }
    path = config_dir / "settings.yml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def assert_nothing_changed(config_dir: Path) -> None:
    label = f"io.mlops-kit.env={BAD_ENV}"
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, label) == [], f"a {kind} of {BAD_ENV} was created"
    assert not (REPO_ROOT / "build" / BAD_ENV).exists(), f"build/{BAD_ENV} was created"
    assert not (config_dir / "state").exists(), "the host state directory was created"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"mlops_docker_mlfow_port": 5000},
            "unknown setting(s) mlops_docker_mlfow_port",
            id="unknown-key",
        ),
        pytest.param(
            {"mlops_docker_bind_address": "127.0.0.300"},
            "mlops_docker_bind_address=127.0.0.300 is not an IP address",
            id="invalid-bind-address",
        ),
        pytest.param(
            {"mlops_docker_bind_address": "192.0.2.77"},
            "mlops_docker_bind_address=192.0.2.77 is not an address of this host",
            id="foreign-bind-address",
        ),
        pytest.param(
            {"mlops_docker_sftp_port": "twenty-two"},
            "mlops_docker_sftp_port",
            id="wrong-type",
        ),
        pytest.param(
            {"mlops_docker_sftp_port": 18600},
            "must be two different ports",
            id="same-ports",
        ),
        pytest.param(
            {"mlops_target": "dockr"}, "mlops_target=dockr must be one of", id="bad-target"
        ),
        pytest.param(
            {"mlops_docker_postgres_memory": "1g", "mlops_docker_postgresql_memory": "2g"},
            "mlops_docker_postgres_memory and mlops_docker_postgresql_memory name the same setting",
            id="old-and-new-name",
        ),
        pytest.param(
            {"mlops_docker_postgres_memroy": "1g"},
            "unknown setting(s) mlops_docker_postgres_memroy",
            id="unknown-old-name",
        ),
        pytest.param(
            {"mlops_docker_postgres_memory": "lots"},
            "mlops_docker_postgresql_memory",
            id="bad-value-under-old-name",
        ),
    ],
)
def test_bad_setting_fails_before_any_change(config_dir, overrides, expected):
    settings = settings_with(config_dir, **overrides)
    result = ansible_playbook("deploy.yml", config_dir / "inventory.yml", settings, BAD_ENV)
    assert result.returncode != 0, result.explain()
    assert expected in " ".join(result.output.split()), result.explain()
    assert_nothing_changed(config_dir)


def test_port_in_use_fails_before_any_change(config_dir, busy_port):
    settings = settings_with(config_dir, mlops_docker_mlflow_port=busy_port)
    result = ansible_playbook("deploy.yml", config_dir / "inventory.yml", settings, BAD_ENV)
    assert result.returncode != 0, result.explain()
    message = f"mlops_docker_mlflow_port={busy_port} is already in use on 127.0.0.1"
    assert message in " ".join(result.output.split()), result.explain()
    assert_nothing_changed(config_dir)


def test_missing_environment_directory_is_named():
    result = make("deploy", ENV="e2e-missing")
    assert result.returncode != 0, result.explain()
    assert "deploy/e2e-missing/ does not exist" in result.output, result.explain()
    assert not (REPO_ROOT / "build" / "e2e-missing").exists()


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO0SoGBbMx0hdVJw4HS8qq5ZDJWR2cOVhqUQexg5zP9J"


@pytest.mark.parametrize(
    ("people", "expected"),
    [
        pytest.param(
            [
                {"name": "alice", "mlflow": "editor", "public_key": KEY + " alice"},
                {"name": "mallory", "mlflow": "reader", "public_key": KEY + " mallory"},
            ],
            "two people give the same public_key",
            id="shared-key",
        ),
        pytest.param(
            [{"name": "admin", "mlflow": "admin"}], "person admin: name must match", id="admin"
        ),
        pytest.param([{"name": "eve", "mlflow": "owner"}], "(got owner)", id="unknown-role"),
        pytest.param(
            [{"name": "eve", "mlflow": "reader", "dvc": "root"}], "(got root)", id="unknown-dvc"
        ),
        pytest.param(
            [{"name": "eve", "mlflow": "reader"}, {"name": "eve", "mlflow": "editor"}],
            "listed more than once: eve",
            id="twice",
        ),
        pytest.param(
            [{"name": "eve", "mlflow": "reader", "public_key": "ssh-rsa not-a-key; rm -rf /"}],
            "person eve",
            id="bad-key",
        ),
    ],
)
def test_bad_people_fail_before_any_change(config_dir, people, expected):
    """A people list a hostile or careless editor wrote never reaches a container."""
    settings = settings_with(config_dir)
    (config_dir / "people.yml").write_text(yaml.safe_dump({"mlops_people": people}))
    result = ansible_playbook("deploy.yml", config_dir / "inventory.yml", settings, BAD_ENV)
    assert result.returncode != 0, result.explain()
    assert expected in " ".join(result.output.split()), result.explain()
    assert_nothing_changed(config_dir)
