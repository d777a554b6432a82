"""What the Docker role makes of its variables, rendered by Ansible itself (no deploy): the
role's defaults and vars are loaded and one Jinja expression is written out as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_ROLE = REPO_ROOT / "ansible" / "roles" / "mlops_docker"
PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_vars: {file: "%(role)s/defaults/main.yml"}
    - ansible.builtin.include_vars: {file: "%(role)s/vars/main.yml"}
    - ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: "{{ (%(expression)s) | to_json }}"
"""


def render_docker_role(tmp_path: Path, expression: str, **variables: Any) -> Any:
    """The value of `expression` with the role's defaults and vars (and `variables` on top)."""
    (tmp_path / "play.yml").write_text(PLAY % {"role": DOCKER_ROLE, "expression": expression})
    extra = {
        "mlops_env": "unit", "out": str(tmp_path / "out.json"),
        "ansible_python_interpreter": sys.executable, "playbook_dir": str(REPO_ROOT / "ansible"),
        **variables,
    }  # fmt: skip
    result = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(tmp_path / "play.yml"), "-e", json.dumps(extra)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads((tmp_path / "out.json").read_text())
