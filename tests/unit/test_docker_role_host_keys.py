"""The Docker role's SFTP host keys: the profile's types are generated, and every host key an
earlier deploy made stays served, so the keys clients trust never go away (rendered by Ansible)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLE = REPO_ROOT / "ansible" / "roles" / "mlops_docker"
PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_vars: {file: "%(role)s/defaults/main.yml"}
    - ansible.builtin.include_vars: {file: "%(role)s/vars/main.yml"}
    - ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: >-
          {{ {'generated': mlops_docker_ssh_keys | map(attribute='file') | list,
              'served': mlops_docker_all_host_files | selectattr('dir', 'equalto', 'sftp-host-keys')
                        | map(attribute='name') | list} | to_json }}
"""


def render(tmp_path: Path, existing: list[str], **settings: object) -> dict[str, list[str]]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in existing:
        (secrets / name).write_text("key\n")
    (tmp_path / "play.yml").write_text(PLAY % {"role": ROLE})
    extra = {
        "mlops_env": "unit", "out": str(tmp_path / "out.json"),
        "mlops_docker_secrets_dir": str(secrets), "ansible_python_interpreter": sys.executable,
        **settings,
    }  # fmt: skip
    result = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(tmp_path / "play.yml"), "-e", json.dumps(extra)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads((tmp_path / "out.json").read_text())


def test_a_new_environment_gets_the_profiles_key_types(tmp_path: Path) -> None:
    # After the generate step: the keys of the profile's types exist.
    found = render(tmp_path, ["sftp_host_ecdsa_key", "sftp_host_rsa_key", "mlflow_sftp_id_rsa"])
    assert found["generated"] == ["mlflow_sftp_id_rsa", "sftp_host_ecdsa_key", "sftp_host_rsa_key"]
    assert found["served"] == ["ssh_host_ecdsa_key", "ssh_host_rsa_key"]


def test_a_host_key_of_an_earlier_deploy_stays_served(tmp_path: Path) -> None:
    """An environment deployed when the keys were ed25519 + RSA keeps its ed25519 key."""
    existing = ["sftp_host_ed25519_key", "sftp_host_ecdsa_key", "sftp_host_rsa_key"]
    found = render(tmp_path, existing, mlops_docker_sftp_host_key_types=["rsa"])
    assert found["generated"] == ["mlflow_sftp_id_rsa", "sftp_host_rsa_key"]
    assert found["served"] == ["ssh_host_ecdsa_key", "ssh_host_ed25519_key", "ssh_host_rsa_key"]
