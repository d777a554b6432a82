"""The kubernetes role's people step (tasks/people.yml) run for real on this machine, its output
rendered by the chart: deploy/<env>/people.yml → key pairs on the controller → `people` values
→ the SFTP access list. No cluster is needed for this step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from chartlib import RELEASE, REPO_ROOT, helm_template
from conftest import ALICE_KEY

ANSIBLE_PLAYBOOK = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"
ROLE_DIR = REPO_ROOT / "ansible" / "roles" / "mlops_kubernetes"
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: mlops_kubernetes
        tasks_from: people.yml
    - ansible.builtin.copy:
        content: "{{ {'people': mlops_kubernetes_chart_people,
                      'direct': mlops_kubernetes_direct_artifacts} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""
PEOPLE = [
    {"name": "alice", "mlflow": "editor", "dvc": "write", "public_key": ALICE_KEY},
    {"name": "bob", "mlflow": "reader", "dvc": "read"},
    {"name": "carol", "mlflow": "admin"},
]


def run_people_step(tmp: Path, values: dict[str, Any]) -> dict[str, Any]:
    env_dir = tmp / "deploy"
    env_dir.mkdir(exist_ok=True)
    (env_dir / "values.yaml").write_text(yaml.safe_dump(values))
    (tmp / "play.yml").write_text(PLAYBOOK)
    out = tmp / "out.json"
    extra = {
        "mlops_env": "unit",
        "mlops_target": "kubernetes",
        "mlops_people": PEOPLE,
        "mlops_kubernetes_env_dir": str(env_dir),
        "mlops_kubernetes_people_dir": str(tmp / "people"),
        "mlops_kubernetes_secrets_dir": str(tmp / "secrets"),
        "out": str(out),
        "ansible_python_interpreter": sys.executable,
    }
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(tmp / "play.yml"),
         "-e", json.dumps(extra)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "ansible" / "roles"),
             "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("role-people")
    return tmp, run_people_step(tmp, {"sftp": {"service": {"type": "ClusterIP"}}})


def test_generated_keys_stay_private_on_the_controller(
    proxied: tuple[Path, dict[str, Any]],
) -> None:
    tmp, _ = proxied
    for name in ("bob", "carol"):
        directory = tmp / "people" / name
        assert directory.stat().st_mode & 0o777 == 0o700
        assert (directory / "id_rsa").stat().st_mode & 0o777 == 0o600
        assert (directory / "id_rsa.pub").read_text().startswith("ssh-rsa ")
    assert not (tmp / "people" / "alice" / "id_rsa").exists(), "alice gave her own key"


def test_people_values_feed_the_chart(helm: Path, proxied: tuple[Path, dict[str, Any]]) -> None:
    tmp, out = proxied
    assert out["direct"] is False
    bob_key = (tmp / "people" / "bob" / "id_rsa.pub").read_text().strip()
    assert out["people"] == [
        {"name": "alice", "mlflow": "editor", "dvc": "write", "publicKey": ALICE_KEY},
        {"name": "bob", "mlflow": "reader", "dvc": "read", "publicKey": bob_key},
        {
            "name": "carol", "mlflow": "admin", "dvc": "none",
            "publicKey": (tmp / "people" / "carol" / "id_rsa.pub").read_text().strip(),
        },
    ]  # fmt: skip
    rendered = helm_template(helm, {"people": out["people"]})
    access = rendered.get("ConfigMap", "-sftp-access")["data"]
    assert access == {"person-alice": f"dvc rw {ALICE_KEY}", "person-bob": f"dvc ro {bob_key}"}


def test_direct_artifacts_use_each_person_single_key(helm: Path, tmp_path: Path) -> None:
    """One key per person, as on the Docker target: no second key pair (an earlier version's is
    deleted), and the chart gives the person's key the artifact area by role."""
    stale = tmp_path / "people" / "bob"
    stale.mkdir(parents=True)
    for name in ("artifacts_id_rsa", "artifacts_id_rsa.pub"):
        (stale / name).write_text("from an earlier version\n")
    out = run_people_step(tmp_path, {"mlflow": {"serveArtifacts": False}})
    assert out["direct"] is True
    keys = {"alice": ALICE_KEY} | {
        name: (tmp_path / "people" / name / "id_rsa.pub").read_text().strip()
        for name in ("bob", "carol")
    }
    assert out["people"] == [
        {"name": "alice", "mlflow": "editor", "dvc": "write", "publicKey": keys["alice"]},
        {"name": "bob", "mlflow": "reader", "dvc": "read", "publicKey": keys["bob"]},
        {"name": "carol", "mlflow": "admin", "dvc": "none", "publicKey": keys["carol"]},
    ]
    assert not list((tmp_path / "people").glob("*/artifacts_id_rsa*"))
    rendered = helm_template(helm, {"people": out["people"], "mlflow": {"serveArtifacts": False}})
    access = rendered.get("ConfigMap", "-sftp-access")["data"]
    assert access == {
        "person-alice": f"dvc rw {keys['alice']}\nartifacts rw {keys['alice']}",
        "person-bob": f"dvc ro {keys['bob']}\nartifacts ro {keys['bob']}",
        "person-carol": f"artifacts rw {keys['carol']}",
    }


def test_the_role_finds_exactly_the_people_secret(helm: Path) -> None:
    """The role's label selector (vars/main.yml, used by rotate-user and connection.env) and the
    chart's labels (templates/secrets.yaml) are two copies of one fact: they must pick the
    people Secret, and only it, whatever the release's names."""
    role_vars = yaml.safe_load((ROLE_DIR / "vars" / "main.yml").read_text())
    selectors = [
        jinja2.Template(s).render(mlops_kubernetes_release=RELEASE)
        for s in role_vars["mlops_kubernetes_people_secret_selectors"]
    ]
    wanted = dict(s.split("=", 1) for s in selectors)
    rendered = helm_template(
        helm, {"fullnameOverride": "team-tracking", "people": [{"name": "bob", "mlflow": "reader"}]}
    )
    picked = [
        doc
        for doc in rendered.of_kind("Secret")
        if wanted.items() <= (doc["metadata"].get("labels") or {}).items()
    ]
    assert len(picked) == 1, [d["metadata"]["name"] for d in picked]
    assert {"people.json", "bob.password"} <= set(picked[0]["data"])
