"""build/<env>/stack.json: what the roles write and what scripts/mlopskit/stack.py reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlopskit.stack import STACK_VERSION, StackFileError, load_stack, parse_stack
from mlopskit.versions import IMAGE_NAMES, REPO_ROOT

ROLES = REPO_ROOT / "ansible" / "roles"


def docker_document(build: Path, env: str = "x") -> dict:
    return {
        "version": STACK_VERSION,
        "target": "docker",
        "environment": env,
        "name_prefix": f"mlops-{env}",
        "network": f"mlops-{env}",
        "state_dir": f"/var/lib/mlops-kit/mlops-{env}",
        "backup_dir": f"/var/backups/mlops-kit/mlops-{env}",
        "services": {
            "postgresql": {"container": "pg-c", "image": "r/postgresql:16", "port": 5432,
                           "volumes": ["pg-v"]},
            "sftp": {"container": "sftp-c", "image": "r/sftp:1", "port": 2222,
                     "bind_address": "127.0.0.1", "published_port": 2223, "volumes": ["sftp-v"]},
            "mlflow": {"container": "mlflow-c", "image": "r/mlflow:3", "port": 5000,
                       "bind_address": "127.0.0.1", "published_port": 5001, "volumes": []},
        },
        "controller": {
            "build_dir": str(build / env),
            "admin_env": str(build / env / "admin.env"),
            "secrets_dir": str(build / env / "secrets"),
            "people_dir": str(build / env / "people"),
            "known_hosts": str(build / env / "known_hosts"),
        },
    }  # fmt: skip


def write(build: Path, document: dict, env: str = "x") -> None:
    (build / env).mkdir(parents=True, exist_ok=True)
    (build / env / "stack.json").write_text(json.dumps(document))


def test_a_docker_stack_is_read(tmp_path: Path) -> None:
    write(tmp_path, docker_document(tmp_path))
    stack = load_stack("x", tmp_path)
    assert stack.target == "docker"
    assert [stack.container(s) for s in ("postgresql", "sftp", "mlflow")] == [
        "pg-c", "sftp-c", "mlflow-c",
    ]  # fmt: skip
    assert stack.service("mlflow").published_port == 5001
    assert stack.service("postgresql").published_port is None
    assert stack.volumes == ["pg-v", "sftp-v"]
    assert stack.backup_dir == Path("/var/backups/mlops-kit/mlops-x")
    assert stack.controller.secrets_dir == tmp_path / "x" / "secrets"


def test_a_version_1_stack_names_postgresql_as_now(tmp_path: Path) -> None:
    """Written before the service was called postgresql everywhere (issue 11)."""
    document = docker_document(tmp_path)
    document["version"] = 1
    document["services"]["postgres"] = document["services"].pop("postgresql")
    write(tmp_path, document)
    stack = load_stack("x", tmp_path)
    assert stack.container("postgresql") == "pg-c"
    assert set(stack.services) == {"postgresql", "sftp", "mlflow"}


def test_a_missing_file_says_to_deploy(tmp_path: Path) -> None:
    with pytest.raises(StackFileError) as error:
        load_stack("x", tmp_path)
    assert str(error.value) == "build/x/stack.json does not exist: run `make deploy ENV=x`"


@pytest.mark.parametrize("version", [None, 0, STACK_VERSION + 1])
def test_another_version_says_to_deploy_again(tmp_path: Path, version: object) -> None:
    document = docker_document(tmp_path)
    document["version"] = version
    write(tmp_path, document)
    with pytest.raises(StackFileError, match="make deploy ENV=x"):
        load_stack("x", tmp_path)


def test_an_incomplete_file_is_refused(tmp_path: Path) -> None:
    document = docker_document(tmp_path)
    del document["services"]["mlflow"]["port"]
    with pytest.raises(StackFileError, match="incomplete"):
        parse_stack(document, tmp_path / "x" / "stack.json")


def test_an_unknown_service_is_named(tmp_path: Path) -> None:
    stack = parse_stack(docker_document(tmp_path), tmp_path / "x" / "stack.json")
    with pytest.raises(StackFileError, match="no service 'postgres'"):
        stack.service("postgres")


def test_a_kubernetes_stack_has_services_not_containers(tmp_path: Path) -> None:
    document = {
        "version": STACK_VERSION,
        "target": "openshift",
        "environment": "x",
        "namespace": "ml",
        "release": "mlops",
        "access": "port-forward",
        "services": {
            "mlflow": {"service": "mlops-mlops-kit-mlflow", "port": 5000, "local_port": 15000,
                       "pid_file": "/b/port-forward-mlflow.pid"},
            "sftp": {"service": "mlops-mlops-kit-sftp", "port": 2222, "local_port": 12222},
        },
        "controller": docker_document(tmp_path)["controller"],
    }  # fmt: skip
    stack = parse_stack(document, tmp_path / "x" / "stack.json")
    assert (stack.namespace, stack.release) == ("ml", "mlops")
    assert stack.service("mlflow").name == "mlops-mlops-kit-mlflow"
    assert stack.service("mlflow").pid_file == Path("/b/port-forward-mlflow.pid")
    with pytest.raises(StackFileError, match="no containers"):
        stack.container("mlflow")


def role_stack(role: str, variable: str) -> tuple[dict, dict]:
    """The stack description a role writes, unrendered, and the role's vars."""
    role_vars = yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text())
    return role_vars[variable], role_vars


def test_the_docker_role_writes_what_the_reader_reads() -> None:
    stack, role_vars = role_stack("mlops_docker", "mlops_docker_stack")
    assert role_vars["mlops_docker_stack_version"] == STACK_VERSION
    assert stack["target"] == "docker"
    assert set(stack["services"]) == set(IMAGE_NAMES)
    for service in stack["services"].values():
        assert {"container", "image", "port", "volumes"} <= set(service)
    assert {"build_dir", "admin_env", "secrets_dir", "people_dir", "known_hosts"} == set(
        stack["controller"]
    )
    # Only paths: no template reads a secret file's content.
    assert "lookup(" not in json.dumps(stack)
    connection = (ROLES / "mlops_docker" / "tasks" / "connection.yml").read_text()
    assert "mlops_docker_stack | to_nice_json" in connection


KUBERNETES_PLAY = """
- hosts: localhost
  gather_facts: false
  vars_files: [{defaults}, {vars}]
  vars:
    mlops_env: kx
    mlops_target: openshift
    mlops_kubernetes_tracking_uri: http://127.0.0.1:15000
    mlops_kubernetes_sftp_host: 127.0.0.1
    mlops_kubernetes_sftp_port: "12222"
    mlops_kubernetes_services: {{mlflow: r-mlops-kit-mlflow, sftp: r-mlops-kit-sftp}}
    mlops_kubernetes_service_ports: {{mlflow: 5000, sftp: "2222"}}
  tasks:
    - ansible.builtin.copy:
        content: "{{{{ mlops_kubernetes_stack | to_nice_json }}}}"
        dest: {dest}
        mode: "0644"
"""


@pytest.mark.parametrize("access", ["port-forward", "exposed"])
def test_the_kubernetes_role_writes_what_the_reader_reads(tmp_path: Path, access: str) -> None:
    """The role's mlops_kubernetes_stack, rendered by Ansible with the facts
    tasks/connection.yml sets, is a file load_stack reads."""
    role = ROLES / "mlops_kubernetes"
    play = tmp_path / "play.yml"
    play.write_text(
        KUBERNETES_PLAY.format(
            defaults=role / "defaults" / "main.yml",
            vars=role / "vars" / "main.yml",
            dest=tmp_path / "kx" / "stack.json",
        )
    )
    (tmp_path / "kx").mkdir()
    result = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"mlops_kubernetes_access={access}",
         "-e", f"ansible_python_interpreter={sys.executable}",
         str(play)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    stack = load_stack("kx", tmp_path)
    assert (stack.target, stack.namespace, stack.release, stack.access) == (
        "openshift", "mlops", "mlops", access,
    )  # fmt: skip
    mlflow, sftp = stack.service("mlflow"), stack.service("sftp")
    assert (mlflow.name, mlflow.port, sftp.name, sftp.port) == (
        "r-mlops-kit-mlflow", 5000, "r-mlops-kit-sftp", 2222,
    )  # fmt: skip
    # build/ beside the playbook's directory: the repository root in a real deploy.
    build = stack.controller.build_dir
    assert build == tmp_path.parent / "build" / "kx"
    # What backup and restore reach the release with (kube_env.py).
    assert stack.backup_dir == Path("/var/backups/mlops-kit/kx")
    assert (stack.extra["kubeconfig"], stack.extra["context"]) == ("", "")
    assert (stack.controller.admin_env, stack.controller.secrets_dir) == (
        build / "admin.env", build / "secrets",
    )  # fmt: skip
    if access == "port-forward":
        assert (mlflow.local_port, sftp.local_port) == (15000, 12222)
        assert mlflow.pid_file == build / "port-forward-mlflow.pid"
    else:
        assert (mlflow.local_port, mlflow.pid_file, mlflow.log_file) == (None, None, None)
    connection = (role / "tasks" / "connection.yml").read_text()
    assert "mlops_kubernetes_stack | to_nice_json" in connection
