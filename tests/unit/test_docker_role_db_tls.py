"""The Docker role's checks of the database TLS settings (tasks/validate.yml, run by Ansible on
this host): settings that cannot work and unusable files fail before any change, naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_contract import run_docker_validation

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def settings_error(tmp_path: Path, settings: dict[str, object]) -> str:
    """The validation's output, which must have stopped at an assertion that evaluated false:
    a check that fails to evaluate also stops the deploy, and also prints its message (as the
    item's `msg`), but names nothing to the user."""
    result = run_docker_validation(tmp_path, settings)
    assert result.returncode != 0, result.stdout[-2000:]
    output = " ".join(result.stdout.split())
    assert '"evaluated_to": false' in output, output[-2000:]
    assert "Conditional result" not in output, output[-2000:]
    return output


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """A CA, a certificate and a key as an operator leaves them (key 0400 for the UID: the
    test cannot chown, so group 0 with 0440 stands in when this runs as root)."""
    directory = tmp_path / "pki"
    directory.mkdir()
    paths = {}
    for name, mode in (("ca.pem", 0o644), ("pg.crt", 0o644), ("pg.key", 0o640)):
        (directory / name).write_text(PEM)
        (directory / name).chmod(mode)
        paths[name] = str(directory / name)
    return paths


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"mlops_docker_db_sslmode": "verify-full"},
            "mlops_docker_db_sslmode=verify-full checks the database's certificate against a CA, "
            "but mlops_docker_db_sslrootcert is empty; set mlops_docker_db_sslrootcert",
        ),
        (
            {"mlops_docker_db_sslrootcert": "/etc/ssl/ca.pem"},
            'mlops_docker_db_sslrootcert is set but mlops_docker_db_sslmode="" lets the connection '
            "go without TLS; set mlops_docker_db_sslmode: verify-full",
        ),
        (
            {"mlops_docker_postgresql_tls_cert_file": "/etc/ssl/pg.crt"},
            "set mlops_docker_postgresql_tls_cert_file and mlops_docker_postgresql_tls_key_file "
            "together",
        ),
        (
            {"mlops_docker_db_sslmode": "verify-ca", "mlops_docker_db_sslrootcert": "ca.pem"},
            "mlops_docker_db_sslrootcert must be absolute paths of files on the Docker host",
        ),
        (
            {"mlops_docker_db_read_replica_port": 0},
            "mlops_docker_db_read_replica_port=0 is outside the range 1..65535",
        ),
        (
            {"mlops_docker_mlflow_tls_cert_file": "/etc/ssl/mlflow.crt"},
            "set mlops_docker_mlflow_tls_cert_file and mlops_docker_mlflow_tls_key_file together",
        ),
        (
            {"mlops_docker_mlflow_tls_ca_file": "/etc/ssl/ca.pem"},
            "mlops_docker_mlflow_tls_ca_file is for clients checking MLflow's certificate, but "
            "MLflow has none",
        ),
    ],
)
def test_tls_settings_that_cannot_work_are_refused(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    assert message in settings_error(tmp_path, settings)


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    error = settings_error(
        tmp_path, {"mlops_docker_db_sslmode": "verify-full", "mlops_docker_db_sslrootcert": missing}
    )
    assert f"mlops_docker_db_sslrootcert={missing} is not a file on the Docker host" in error


def test_a_key_every_user_can_read_is_refused(tmp_path: Path, files: dict[str, str]) -> None:
    Path(files["pg.key"]).chmod(0o644)
    key = files["pg.key"]
    error = settings_error(
        tmp_path,
        {
            "mlops_docker_postgresql_tls_cert_file": files["pg.crt"],
            "mlops_docker_postgresql_tls_key_file": key,
        },
    )
    assert f"mlops_docker_postgresql_tls_key_file={key} is readable by every user of the host" in (
        error
    )
    assert f"chown 10001 {key} && chmod 0400 {key}" in error


def test_an_mlflow_key_every_user_can_read_is_refused(
    tmp_path: Path, files: dict[str, str]
) -> None:
    Path(files["pg.key"]).chmod(0o644)
    key = files["pg.key"]
    settings = {
        "mlops_docker_mlflow_tls_cert_file": files["pg.crt"],
        "mlops_docker_mlflow_tls_key_file": key,
    }
    error = settings_error(tmp_path, settings)
    assert f"mlops_docker_mlflow_tls_key_file={key} is readable by every user of the host" in error


def test_a_key_the_containers_cannot_read_is_refused(tmp_path: Path, files: dict[str, str]) -> None:
    Path(files["pg.key"]).chmod(0o600)  # owned by this test's user, not by UID 10001
    error = settings_error(
        tmp_path,
        {
            "mlops_docker_postgresql_tls_cert_file": files["pg.crt"],
            "mlops_docker_postgresql_tls_key_file": files["pg.key"],
        },
    )
    assert "cannot be read by the containers' UID 10001" in error


def test_usable_tls_files_pass_the_checks(tmp_path: Path, files: dict[str, str]) -> None:
    import os

    if os.getgid() != 0:
        pytest.skip("a key readable by group 0 needs this test to run in group 0")
    result = run_docker_validation(
        tmp_path,
        {
            "mlops_docker_db_sslmode": "verify-full",
            "mlops_docker_db_sslrootcert": files["ca.pem"],
            "mlops_docker_postgresql_tls_cert_file": files["pg.crt"],
            "mlops_docker_postgresql_tls_key_file": files["pg.key"],
        },
    )
    output = result.stdout
    assert "Check that the containers can read the TLS files" in output
    assert "TLS" not in "".join(line for line in output.splitlines() if "FAILED" in line)
    assert "Gather the facts the checks need" in output, "the TLS checks passed"
