"""The Docker role's SFTP host keys: the profile's types are generated, and every host key an
earlier deploy made stays served, so the keys clients trust never go away (rendered by Ansible)."""

from __future__ import annotations

from pathlib import Path

from tests.support.docker_role import render_docker_role

# The key files the role generates, and the host keys it gives the SFTP container.
EXPRESSION = """{'generated': mlops_docker_ssh_keys | map(attribute='file') | list,
    'served': mlops_docker_all_host_files | selectattr('dir', 'equalto', 'sftp-host-keys')
              | map(attribute='name') | list}"""


def render(tmp_path: Path, existing: list[str], **settings: object) -> dict[str, list[str]]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in existing:
        (secrets / name).write_text("key\n")
    return render_docker_role(
        tmp_path, EXPRESSION, mlops_docker_secrets_dir=str(secrets), **settings
    )


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
