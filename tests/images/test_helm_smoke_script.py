"""The chart's `helm test` script (charts/mlops-kit/files/smoke_test.py) against the real images.

No cluster here, so the same script runs in the MLflow image on the test network, with the
settings and mounted files the chart's test pod gives it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images.conftest import Mlflow, Sftp, sftp_client_files
from tests.support.docker import Sandbox, secret_dir

pytestmark = pytest.mark.docker

SCRIPT = Path(__file__).resolve().parents[2] / "charts" / "mlops-kit" / "files" / "smoke_test.py"


def run_smoke_script(
    sandbox: Sandbox, images, mlflow_server: Mlflow, sftp: Sftp, tmp_path: Path, password: str
):
    auth = secret_dir(tmp_path / "auth", {"admin-password": password})
    ssh = sftp_client_files(tmp_path / "sftp", sftp)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "smoke_test.py").write_text(SCRIPT.read_text())
    for path in (scripts, scripts / "smoke_test.py"):
        path.chmod(0o755)
    return sandbox.run_to_exit(
        images.ref("mlflow"),
        env={
            "HOME": "/tmp",
            "SMOKE_TRACKING_URI": "http://mlflow:5000",
            "SMOKE_USERNAME": mlflow_server.username,
            "SMOKE_PASSWORD_FILE": "/etc/mlflow/auth/admin-password",
            "SMOKE_SFTP_HOST": "sftp",
            "SMOKE_SFTP_PORT": "2222",
            "SMOKE_SFTP_USERNAME": "mlops",
            "SMOKE_SFTP_DVC_PATH": "/data/dvc",
            "SMOKE_SFTP_KEY_FILE": "/etc/mlflow/sftp/id_rsa",
            "SMOKE_SFTP_KNOWN_HOSTS_FILE": "/etc/mlflow/sftp/known_hosts",
        },
        mounts=[
            f"{auth}:/etc/mlflow/auth:ro",
            f"{ssh}:/etc/mlflow/sftp:ro",
            f"{scripts}:/opt/mlops-kit/scripts:ro",
        ],
        entrypoint="/opt/mlflow/bin/python",
        command=["/opt/mlops-kit/scripts/smoke_test.py"],
        timeout=180,
    )


def test_helm_test_script_passes_against_a_healthy_stack(
    sandbox: Sandbox, images, mlflow_server: Mlflow, sftp: Sftp, tmp_path: Path
) -> None:
    result = run_smoke_script(sandbox, images, mlflow_server, sftp, tmp_path, mlflow_server.auth[1])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "smoke test passed" in result.stdout


def test_helm_test_script_fails_with_wrong_credentials(
    sandbox: Sandbox, images, mlflow_server: Mlflow, sftp: Sftp, tmp_path: Path
) -> None:
    result = run_smoke_script(sandbox, images, mlflow_server, sftp, tmp_path, "wrong-password-x")
    assert result.returncode != 0
    assert "smoke test passed" not in result.stdout
