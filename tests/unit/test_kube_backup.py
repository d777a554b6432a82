"""Backup and restore through the Kubernetes API: the pure parts (names, which credentials a
restore brings back, the stack file they read) and the SFTP tree scripts on a real directory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from mlopskit import kube_env as kube_env_module
from mlopskit import restore, snapshot
from mlopskit.docker_env import PodExec, exec_argv, target_name
from mlopskit.environments import Environment
from mlopskit.kube_env import KubeEnv, kube_env
from mlopskit.shell import CommandError
from mlopskit.stack import STACK_VERSION, parse_stack
from mlopskit.versions import REPO_ROOT


def test_a_docker_container_and_a_pod_are_both_exec_targets() -> None:
    pod = PodExec(("kubectl", "exec", "-i", "pg-0", "-c", "postgresql", "--"), "pg-0/postgresql")
    assert exec_argv("mlops-x-sftp") == ["docker", "exec", "-i", "mlops-x-sftp"]
    assert exec_argv(pod) == list(pod.argv)
    assert (target_name("mlops-x-sftp"), target_name(pod)) == ("mlops-x-sftp", "pg-0/postgresql")


@pytest.mark.parametrize(
    ("taken_on", "restored_on", "same"),
    [
        ("docker", "docker", True),
        (None, "docker", True),  # backups before format 3 named no target: Docker
        ("kubernetes", "openshift", True),
        ("openshift", "kubernetes", True),
        ("docker", "kubernetes", False),
        ("kubernetes", "docker", False),
    ],
)
def test_credentials_restore_only_within_one_kind_of_target(
    taken_on: str | None, restored_on: str, same: bool
) -> None:
    manifest = {} if taken_on is None else {"target": taken_on}
    assert restore._same_kind(manifest, restored_on) is same


def write_stack(build: Path, **extra: object) -> None:
    document = {
        "version": STACK_VERSION, "target": "kubernetes", "environment": "kx",
        "namespace": "ml", "release": "r", "access": "port-forward",
        "services": {"mlflow": {"service": "r-mlflow", "port": 5000}},
        "controller": {key: str(build) for key in
                       ("build_dir", "admin_env", "secrets_dir", "people_dir", "known_hosts")},
        **extra,
    }  # fmt: skip
    (build / "kx").mkdir(parents=True, exist_ok=True)
    (build / "kx" / "stack.json").write_text(json.dumps(document))


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(
        kube_env_module, "load_stack", lambda env: parse_stack(
            json.loads((tmp_path / env / "stack.json").read_text()), tmp_path / env / "stack.json"
        ),
    )  # fmt: skip
    monkeypatch.setenv("MLOPS_KUBECTL", "/usr/bin/env")
    return tmp_path


def test_kubectl_reaches_the_release_the_deploy_made(build: Path) -> None:
    write_stack(build, kubeconfig="/k/config", context="prod", backup_dir="/var/backups/x")
    kenv = kube_env(Environment("kx"))
    assert kenv.kubectl == (
        "/usr/bin/env", "--kubeconfig", "/k/config", "--context", "prod", "--namespace", "ml",
    )  # fmt: skip
    assert kenv.backup_root == Path("/var/backups/x")
    assert kenv.selector("sftp") == "app.kubernetes.io/instance=r,app.kubernetes.io/component=sftp"


def test_a_stack_from_before_kubernetes_backups_says_to_deploy(build: Path) -> None:
    write_stack(build)
    with pytest.raises(CommandError, match=r"names no backup directory.*make deploy ENV=kx"):
        kube_env(Environment("kx"))


def pod(name: str, phase: str, *ready: bool) -> dict:
    statuses = [{"ready": flag} for flag in ready]
    return {"metadata": {"name": name}, "status": {"phase": phase, "containerStatuses": statuses}}


def test_commands_run_in_a_ready_pod_only(build: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_stack(build, backup_dir="/var/backups/x")
    kenv = kube_env(Environment("kx"))
    pods = [
        pod("old", "Running", True, False),
        pod("gone", "Failed", True),
        pod("ok", "Running", True),
    ]
    monkeypatch.setattr(KubeEnv, "items", lambda self, kind, component: pods)
    target = kenv.exec_target("sftp")
    assert target.argv[-5:] == ("-i", "ok", "-c", "sftp", "--")
    assert target.name == "ok/sftp"
    pods.pop()
    with pytest.raises(CommandError, match=r"no ready sftp pod of release r.*make deploy ENV=kx"):
        kenv.pod("sftp")


def test_databases_restore_by_role_and_a_mismatch_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dumps of mlflow and mlflow_auth go into this environment's tracking and auth databases,
    owned by its application user; a different count, or a name that is no identifier, is
    refused before a database is touched."""
    changes: list[tuple[str, ...]] = []
    answers = {
        restore.PG_DATABASES_SCRIPT: "tracking\ntracking_auth\n",
        restore.APP_USER_SCRIPT: "app\n",
    }

    def fake_exec(target: object, script: str, *args: str, **_: object) -> str:
        if script in answers:
            return answers[script]
        changes.append(("recreate", *args))
        return ""

    monkeypatch.setattr(restore, "docker_exec", fake_exec)
    monkeypatch.setattr(
        restore, "pg_tool", lambda target, db, *command, **_: changes.append((db, *command))
    )
    for name in ("postgresql-mlflow.dump", "postgresql-mlflow_auth.dump"):
        (tmp_path / name).write_bytes(b"dump")
    manifest = {
        "databases": ["mlflow", "mlflow_auth"],
        "files": {"postgresql-mlflow.dump": {}, "postgresql-mlflow_auth.dump": {}},
    }
    restore._recreate_databases("pg", tmp_path, manifest)
    assert [change[:2] for change in changes] == [
        ("recreate", "tracking"), ("tracking", "pg_restore"),
        ("recreate", "tracking_auth"), ("tracking_auth", "pg_restore"),
    ]  # fmt: skip
    assert all("--role=app" in change for change in changes if change[1] == "pg_restore")
    changes.clear()
    with pytest.raises(CommandError, match=r"holds 1 database.*has 2.*nothing was changed"):
        restore._recreate_databases("pg", tmp_path, {**manifest, "databases": ["mlflow"]})
    answers[restore.APP_USER_SCRIPT] = "app; drop\n"
    with pytest.raises(CommandError, match=r"refusing .*'app; drop'.*nothing was changed"):
        restore._recreate_databases("pg", tmp_path, manifest)
    assert changes == [], "a database was touched before the refusal"


def run_script(script: str, root: Path, stdin: bytes = b"") -> bytes:
    return subprocess.run(
        ["sh", "-c", script, "sh", str(root)], input=stdin, capture_output=True, check=True
    ).stdout


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """An SFTP data root on an ext4 PVC: lost+found beside the data."""
    root = tmp_path / "data"
    (root / "lost+found").mkdir(parents=True)
    (root / "lost+found" / "#123").write_text("fsck debris")
    (root / "artifacts" / "1").mkdir(parents=True)
    (root / "artifacts" / "1" / "model.pkl").write_bytes(b"weights")
    return root


def test_lost_and_found_is_no_data(volume: Path) -> None:
    listed = snapshot.parse_listing(run_script(snapshot.LIST_SCRIPT, volume))
    assert sorted(entry.path for entry in listed) == [
        "artifacts", "artifacts/1", "artifacts/1/model.pkl"
    ]  # fmt: skip


def test_a_restore_replaces_the_data_and_leaves_lost_and_found(volume: Path) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("dvc/ab/cdef")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"data"))
    run_script(snapshot.TAR_IN_SCRIPT, volume, archive.getvalue())
    assert sorted(str(p.relative_to(volume)) for p in volume.rglob("*")) == [
        "dvc", "dvc/ab", "dvc/ab/cdef", "lost+found", "lost+found/#123"
    ]  # fmt: skip


VALIDATE_PLAY = """
- hosts: localhost
  gather_facts: false
  vars_files: [{role}/defaults/main.yml, {role}/vars/main.yml]
  vars:
    mlops_env: kx
    mlops_target: kubernetes
  tasks:
    - ansible.builtin.import_tasks: {role}/tasks/validate.yml
"""


def validate_backup_dir(
    tmp_path: Path, backup_dir: str | None, *settings: str
) -> subprocess.CompletedProcess:
    """The role's checks (tasks/validate.yml), as a deploy runs them; the play's directory's
    parent stands for the repository, so build/kx/ is under tmp_path."""
    play = tmp_path / "play" / "validate.yml"
    play.parent.mkdir(exist_ok=True)
    play.write_text(VALIDATE_PLAY.format(role=REPO_ROOT / "ansible/roles/mlops_kubernetes"))
    extra = [] if backup_dir is None else ["-e", f"mlops_kubernetes_backup_dir={backup_dir}"]
    extra += [arg for setting in settings for arg in ("-e", setting)]
    return subprocess.run(
        [str(REPO_ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", '{"mlops_kubernetes_values_files": []}', *extra, str(play)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_the_default_backup_dir_passes_the_deploys_checks(tmp_path: Path) -> None:
    result = validate_backup_dir(tmp_path, None)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("where", ["inside", "relative", "linked"])
def test_a_backup_dir_that_a_purge_would_delete_is_refused(tmp_path: Path, where: str) -> None:
    """Inside build/<env>/, relative (to wherever make runs), or a link into build/<env>/."""
    build = tmp_path / "build" / "kx"
    build.mkdir(parents=True)
    (tmp_path / "link").symlink_to(build)
    value = {
        "inside": f"{build}/backups", "relative": "backups", "linked": f"{tmp_path}/link/b",
    }[where]  # fmt: skip
    result = validate_backup_dir(tmp_path, value)
    assert result.returncode != 0
    assert f"mlops_kubernetes_backup_dir={value}" in result.stdout, result.stdout
    assert "make destroy PURGE=1" in result.stdout


@pytest.mark.parametrize("version", ["3.16.1", "latest", "3.16", "v3.16.1"])
def test_the_mlflow_release_must_be_one(tmp_path: Path, version: str) -> None:
    """mlops_kubernetes_mlflow_version becomes the chart's image tag: a release or nothing."""
    result = validate_backup_dir(tmp_path, None, f"mlops_kubernetes_mlflow_version={version}")
    said = " ".join(result.stdout.split())
    if version == "3.16.1":
        assert result.returncode == 0, result.stdout
    else:
        assert result.returncode != 0
        assert f"MLFLOW_VERSION)={version} must be an MLflow release like 3.16.1" in said, said
