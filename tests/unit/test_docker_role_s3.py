"""The Docker role's checks of the S3 artifact settings (tasks/validate.yml, run by Ansible on
this host): settings that cannot work, unusable files and a moved destination fail before any
change, naming the fix; and the role accepts the same forms as the chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.unit.test_contract import REPO_ROOT, run_docker_validation
from tests.unit.test_docker_role_db_tls import settings_error

S3 = {
    "mlops_docker_artifacts_backend": "s3",
    "mlops_docker_artifacts_s3_endpoint_url": "https://rgw.example.com",
    "mlops_docker_artifacts_s3_bucket": "team-artifacts",
}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {**S3, "mlops_docker_artifacts_mode": "sftp"},
            "mlops_docker_artifacts_backend=s3 keeps artifacts behind the MLflow server, but "
            "mlops_docker_artifacts_mode=sftp hands clients sftp:// addresses; set "
            "mlops_docker_artifacts_mode: proxied",
        ),
        (
            {**S3, "mlops_docker_artifacts_s3_bucket": ""},
            "mlops_docker_artifacts_backend=s3 needs mlops_docker_artifacts_s3_bucket",
        ),
        (
            {**S3, "mlops_docker_artifacts_s3_bucket": "Team_Artifacts"},
            "mlops_docker_artifacts_s3_bucket=Team_Artifacts does not match",
        ),
        (
            {**S3, "mlops_docker_artifacts_s3_endpoint_url": "https://rgw.example.com/bucket"},
            "mlops_docker_artifacts_s3_endpoint_url=https://rgw.example.com/bucket does not match",
        ),
        (
            {**S3, "mlops_docker_artifacts_s3_prefix": "my runs"},
            "mlops_docker_artifacts_s3_prefix=my runs does not match",
        ),
        (
            {**S3, "mlops_docker_artifacts_s3_credentials_file": "s3/credentials"},
            "mlops_docker_artifacts_s3_credentials_file must be absolute paths of files on the "
            "Docker host",
        ),
    ],
)
def test_s3_settings_that_cannot_work_are_refused(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    assert message in settings_error(tmp_path, settings)


def test_a_credentials_file_every_user_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("[default]\naws_access_key_id = A\naws_secret_access_key = B\n")
    path.chmod(0o644)
    error = settings_error(
        tmp_path, {**S3, "mlops_docker_artifacts_s3_credentials_file": str(path)}
    )
    assert f"mlops_docker_artifacts_s3_credentials_file={path} is readable by every user" in error
    assert f"chown 10001 {path} && chmod 0400 {path}" in error


def test_the_s3_files_are_not_looked_at_on_the_sftp_backend(tmp_path: Path) -> None:
    """Leftover S3 settings of an sftp deploy name no file the deploy would need."""
    settings = {
        **S3,
        "mlops_docker_artifacts_backend": "sftp",
        "mlops_docker_artifacts_s3_credentials_file": str(tmp_path / "absent"),
    }
    output = run_docker_validation(tmp_path, settings).stdout
    assert "absent is not a file" not in output
    assert "Gather the facts the checks need" in output, "the checks before it passed"


@pytest.mark.parametrize(
    ("recorded", "settings", "refused"),
    [
        ("the SFTP volume mlops-unit-sftpdata", S3, True),
        ("s3://team-artifacts/mlflow", {**S3, "mlops_docker_artifacts_s3_prefix": "other"}, True),
        (
            "s3://team-artifacts/mlflow",
            {**S3, "mlops_docker_artifacts_s3_prefix": "/mlflow/"},
            False,
        ),
        ("s3://team-artifacts/mlflow", {"mlops_docker_artifacts_backend": "sftp"}, True),
        ("the SFTP volume mlops-unit-sftpdata", {"mlops_docker_sftp_username": "other"}, False),
    ],
)
def test_moving_the_artifacts_under_existing_runs_is_refused(
    tmp_path: Path, recorded: str, settings: dict[str, object], refused: bool
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "artifacts-location").write_text(recorded + "\n")
    result = run_docker_validation(tmp_path, {**settings, "mlops_docker_state_dir": str(state)})
    output = " ".join(result.stdout.split())
    message = f"the artifacts of the runs so far are at {recorded}"
    if refused:
        assert result.returncode != 0
        assert message in output
        assert f"remove {state}/artifacts-location" in output
    else:
        assert message not in output
        assert "Refuse to move the artifact destination" in output


def test_the_role_accepts_the_forms_the_chart_accepts() -> None:
    """One set of names and forms on both targets: the role's patterns are the schema's."""
    role_vars = yaml.safe_load((REPO_ROOT / "ansible/roles/mlops_docker/vars/main.yml").read_text())
    schema = json.loads((REPO_ROOT / "charts/mlops-kit/values.schema.json").read_text())
    forms = {"endpointUrl": "endpoint_url", "bucket": "bucket", "prefix": "prefix"}
    s3_values = {
        "artifacts": schema["properties"]["mlflow"]["properties"]["artifacts"]["properties"]["s3"],
        "dvc": schema["properties"]["dvc"]["properties"]["s3"],
    }
    # The chart's artifacts and DVC remote take each form from one definition.
    for values in s3_values.values():
        for key in forms:
            definition = values["properties"][key]["$ref"].removeprefix("#/definitions/")
            assert definition == f"s3{key[0].upper()}{key[1:]}", (key, definition)
    role_patterns = role_vars["mlops_docker_s3_patterns"]
    assert set(role_patterns) == {f"mlops_docker_artifacts_s3_{name}" for name in forms.values()}
    for key, name in forms.items():
        pattern = schema["definitions"][f"s3{key[0].upper()}{key[1:]}"]["pattern"]
        role = role_patterns[f"mlops_docker_artifacts_s3_{name}"]
        # The schema lets an empty bucket through (the sftp backend); the role checks it alone.
        assert role in (pattern, pattern.removeprefix("^$|")), key
        # The role's DVC remote takes the artifacts' form, not a copy of it.
        dvc = role_vars["mlops_docker_dvc_s3_patterns"][f"mlops_docker_dvc_s3_{name}"]
        assert dvc == f"{{{{ mlops_docker_s3_patterns.mlops_docker_artifacts_s3_{name} }}}}", dvc


DVC_S3 = {**S3, "mlops_docker_dvc_backend": "s3", "mlops_docker_dvc_s3_bucket": "team-data"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {**DVC_S3, "mlops_docker_artifacts_backend": "sftp"},
            "mlops_docker_dvc_backend=s3 puts the DVC remote on the artifacts' store, but "
            "mlops_docker_artifacts_backend=sftp",
        ),
        (
            {**DVC_S3, "mlops_docker_dvc_s3_bucket": "team-artifacts"},
            "needs mlops_docker_dvc_s3_bucket, an existing bucket owned by the server's S3 user "
            "other than the artifacts' (team-artifacts)",
        ),
        ({**DVC_S3, "mlops_docker_dvc_s3_bucket": ""}, "needs mlops_docker_dvc_s3_bucket"),
        ({**DVC_S3, "mlops_docker_dvc_s3_prefix": "/"}, "needs mlops_docker_dvc_s3_prefix"),
        ({**DVC_S3, "mlops_docker_auth_enabled": False}, "needs mlops_docker_auth_enabled: true"),
        ({**DVC_S3, "mlops_docker_dvc_backend": "nfs"}, "mlops_docker_dvc_backend=nfs must be"),
        (
            {**DVC_S3, "mlops_docker_dvc_s3_bucket": "Team_Data"},
            "mlops_docker_dvc_s3_bucket=Team_Data does not match",
        ),
        (
            {**DVC_S3, "mlops_docker_dvc_s3_endpoint_url": "rgw.example.com"},
            "mlops_docker_dvc_s3_endpoint_url=rgw.example.com does not match",
        ),
        (
            {**DVC_S3, "mlops_docker_dvc_s3_account": "a b"},
            "mlops_docker_dvc_s3_account=a b does not match",
        ),
    ],
)
def test_dvc_on_s3_settings_that_cannot_work_are_refused(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    assert message in " ".join(settings_error(tmp_path, settings).split())


def test_a_dvc_remote_on_s3_passes_the_checks(tmp_path: Path) -> None:
    """The refusals above can fail: the same settings with a bucket of its own pass."""
    output = run_docker_validation(tmp_path, DVC_S3).stdout
    assert "Gather the facts the checks need" in output, output[-3000:]
