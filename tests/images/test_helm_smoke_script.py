"""The chart's `helm test` script (charts/mlops-kit/files/smoke_test.py) against the real images.

No cluster here, so the same script runs in the MLflow image on the test network, with the
settings and mounted files the chart's test pod gives it: the admin, the test reader
(`helm-test-reader`, a people entry), the metrics account, a `dvc rw` and a `dvc ro` key. The
protected paths are the Docker layout's (generated host keys on the volume).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.images.conftest import Sftp, sftp_client_files, start_mlflow_with_people
from tests.support.docker import Container, Sandbox, new_secret, secret_dir

pytestmark = pytest.mark.docker

SCRIPT = Path(__file__).resolve().parents[2] / "charts" / "mlops-kit" / "files" / "smoke_test.py"
READER = "helm-test-reader"
PROTECTED_FILES = [
    "/tmp/sftp/sshd_config",
    "/tmp/sftp/home/.ssh/authorized_keys",
    "/tmp/sftp/host-keys/ssh_host_ecdsa_key",
    "/data/.host-keys/ssh_host_ecdsa_key",
    "/etc/sftp/access/mlflow",
]
OUTSIDE_DIRS = ["/", "/data", "/data/artifacts", "/data/.host-keys", "/tmp/sftp", "/etc", "/proc"]


@dataclass
class Stack:
    container: Container
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def stack(sandbox: Sandbox, images, sftp: Sftp, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """An MLflow server as the chart runs it: people (the test reader) and a metrics account."""
    tmp = tmp_path_factory.mktemp("helm-smoke")
    passwords = {READER: new_secret()}
    people = secret_dir(
        tmp / "people",
        {
            "people.json": f'[{{"name": "{READER}", "role": "reader"}}]',
            f"{READER}.password": passwords[READER],
        },
    )
    started = start_mlflow_with_people(
        sandbox, images, sftp, tmp, "mlflow-smoke", people, passwords,
        env={"MLFLOW_ALLOWED_HOSTS": "mlflow-smoke"},
    )  # fmt: skip
    return Stack(started.container, passwords)


def run_smoke_script(
    sandbox: Sandbox,
    images,
    stack: Stack,
    sftp: Sftp,
    tmp_path: Path,
    password: str,
    with_test_keys: bool = True,
):
    auth = secret_dir(tmp_path / "auth", {"admin-password": password})
    reader = secret_dir(tmp_path / "reader", {"reader-password": stack.passwords[READER]})
    metrics = secret_dir(tmp_path / "metrics", {"password": stack.passwords["metrics"]})
    ssh = sftp_client_files(tmp_path / "sftp", sftp)
    keys = secret_dir(
        tmp_path / "test-keys",
        {"dvc-rw": sftp.writer.private.read_text(), "dvc-ro": sftp.reader.private.read_text()},
    )
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "smoke_test.py").write_text(SCRIPT.read_text())
    for path in (scripts, scripts / "smoke_test.py"):
        path.chmod(0o755)
    env = {
        "HOME": "/tmp",
        "SMOKE_TRACKING_URI": "http://mlflow-smoke:5000",
        "SMOKE_USERNAME": "admin",
        "SMOKE_PASSWORD_FILE": "/etc/mlflow/auth/admin-password",
        "SMOKE_READER_USERNAME": READER,
        "SMOKE_READER_PASSWORD_FILE": "/etc/mlflow/tests/reader-password",
        "SMOKE_METRICS_USERNAME": "metrics",
        "SMOKE_METRICS_PASSWORD_FILE": "/etc/mlflow/metrics/password",
        "SMOKE_SFTP_HOST": "sftp",
        "SMOKE_SFTP_PORT": "2222",
        "SMOKE_SFTP_USERNAME": "mlops",
        "SMOKE_SFTP_DVC_PATH": "/data/dvc",
        "SMOKE_SFTP_KEY_FILE": "/etc/mlflow/sftp/id_rsa",
        "SMOKE_SFTP_KNOWN_HOSTS_FILE": "/etc/mlflow/sftp/known_hosts",
    }
    if with_test_keys:
        env |= {
            "SMOKE_SFTP_WRITER_KEY_FILE": "/etc/sftp-tests/dvc-rw",
            "SMOKE_SFTP_READER_KEY_FILE": "/etc/sftp-tests/dvc-ro",
            "SMOKE_SFTP_ARTIFACTS_PATH": "/data/artifacts",
            "SMOKE_SFTP_PROTECTED_FILES": ",".join(PROTECTED_FILES),
            "SMOKE_SFTP_OUTSIDE_DIRS": ",".join(OUTSIDE_DIRS),
        }
    return sandbox.run_to_exit(
        images.ref("mlflow"),
        env=env,
        mounts=[
            f"{auth}:/etc/mlflow/auth:ro",
            f"{reader}:/etc/mlflow/tests:ro",
            f"{metrics}:/etc/mlflow/metrics:ro",
            f"{ssh}:/etc/mlflow/sftp:ro",
            f"{keys}:/etc/sftp-tests:ro",
            f"{scripts}:/opt/mlops-kit/scripts:ro",
        ],
        entrypoint="/opt/mlflow/bin/python",
        command=["/opt/mlops-kit/scripts/smoke_test.py"],
        timeout=300,
    )


def test_helm_test_script_passes_against_a_healthy_stack(
    sandbox: Sandbox, images, stack: Stack, sftp: Sftp, tmp_path: Path
) -> None:
    result = run_smoke_script(sandbox, images, stack, sftp, tmp_path, stack.passwords["admin"])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for line in (
        "ok: wrong passwords and unknown users get 401",
        "ok: a reader reads and gets 403 creating an experiment",
        "ok: the metrics account reads /metrics and gets 403 on an experiment",
        "ok: the dvc reader cannot write, rename or delete",
        "ok: DVC keys reach no host key, configuration, other directory or the artifact area",
        "ok: MLflow's key cannot reach the DVC area",
        "smoke test passed",
    ):
        assert line in result.stdout, result.stdout
    assert "skip:" not in result.stdout


def test_helm_test_script_leaves_no_live_run(
    sandbox: Sandbox, images, stack: Stack, sftp: Sftp, tmp_path: Path
) -> None:
    result = run_smoke_script(sandbox, images, stack, sftp, tmp_path, stack.passwords["admin"])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    url = f"http://127.0.0.1:{stack.container.host_port(5000)}/api/2.0/mlflow"
    auth = ("admin", stack.passwords["admin"])
    experiment = requests.get(
        f"{url}/experiments/get-by-name",
        params={"experiment_name": "helm-smoke-test"},
        auth=auth,
        timeout=30,
    ).json()["experiment"]
    runs = requests.post(
        f"{url}/runs/search",
        json={"experiment_ids": [experiment["experiment_id"]], "run_view_type": "ACTIVE_ONLY"},
        auth=auth,
        timeout=30,
    ).json()
    assert runs.get("runs", []) == [], "the helm test left a live run in the server"
    assert "and its artifacts" in result.stdout
    # Nor any file: every run of the script (this module runs it several times) cleans up.
    left = sftp.container.exec("find", "/data/artifacts", "-name", "smoke.txt").split()
    assert left == [], f"the helm test left {left} in the artifact store"


def test_helm_test_script_fails_with_wrong_credentials(
    sandbox: Sandbox, images, stack: Stack, sftp: Sftp, tmp_path: Path
) -> None:
    result = run_smoke_script(sandbox, images, stack, sftp, tmp_path, "wrong-password-x")
    assert result.returncode != 0
    assert "smoke test passed" not in result.stdout


def test_helm_test_script_fails_when_a_protected_path_is_missing(
    sandbox: Sandbox, images, stack: Stack, sftp: Sftp, tmp_path: Path, monkeypatch
) -> None:
    """A path that does not exist proves nothing: the script must say so, not pass."""
    monkeypatch.setattr(
        "tests.images.test_helm_smoke_script.PROTECTED_FILES", ["/tmp/sftp/no-such-file"]
    )
    result = run_smoke_script(sandbox, images, stack, sftp, tmp_path, stack.passwords["admin"])
    assert result.returncode != 0
    assert "expected permission denied" in result.stdout + result.stderr


def test_helm_test_script_skips_isolation_without_test_keys(
    sandbox: Sandbox, images, stack: Stack, sftp: Sftp, tmp_path: Path
) -> None:
    """An external SFTP: the DVC-like round trip uses MLflow's key, which reaches only the
    artifact area here, so the round trip is refused: the script fails rather than pass."""
    result = run_smoke_script(
        sandbox, images, stack, sftp, tmp_path, stack.passwords["admin"], with_test_keys=False
    )
    assert result.returncode != 0
    assert "smoke test passed" not in result.stdout
