"""MLflow's artifacts on an existing S3-compatible store (mlflow.artifacts.backend: s3): the chart
fills the image's MLFLOW_S3_* contract (tested against Ceph RGW in tests/images/test_mlflow_s3.py),
mounts the keys only where the server runs, and refuses values that cannot work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import Rendered, RenderError, env_map, helm_template, merged, migrate_container

BASE = {"postgresql": {"auth": {"existingSecret": "pg"}}}
S3 = {
    "backend": "s3",
    "s3": {
        "endpointUrl": "https://rgw.example.com",
        "bucket": "team-artifacts",
        "prefix": "/mlflow/prod/",
        "existingSecret": "mlflow-s3-keys",
        "credentialsKey": "aws-credentials",
        "caSecret": "rgw-ca",
    },
}


def render(helm: Path, artifacts: dict[str, Any], **mlflow: Any) -> Rendered:
    return helm_template(helm, merged(BASE, {"mlflow": {"artifacts": artifacts, **mlflow}}))


@pytest.fixture(scope="module")
def s3_render(helm: Path) -> Rendered:
    return render(helm, S3)


def server_pod(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]


def test_the_server_gets_the_store_the_keys_and_the_ca(s3_render: Rendered) -> None:
    pod = server_pod(s3_render)
    server = pod["containers"][0]
    env = env_map(server)
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://team-artifacts/mlflow/prod"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "https://rgw.example.com"
    assert env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] == "path"
    assert env["MLFLOW_PRESIGNED_ARTIFACT_URLS"] == "false"
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name, setting, secret, key in (
        ("s3-credentials", "MLFLOW_S3_CREDENTIALS_FILE", "mlflow-s3-keys", "aws-credentials"),
        ("s3-ca", "MLFLOW_S3_CA_FILE", "rgw-ca", "ca.crt"),
    ):
        assert mounts[name]["readOnly"] is True
        path = env[setting].removeprefix(mounts[name]["mountPath"] + "/")
        assert volumes[name]["secret"]["secretName"] == secret
        assert volumes[name]["secret"]["items"] == [{"key": key, "path": path}]


def test_the_migration_job_gets_no_s3_key(s3_render: Rendered) -> None:
    job = migrate_container(s3_render)
    assert not [name for name in env_map(job) if "S3" in name or "ARTIFACT" in name]
    assert not {"s3-credentials", "s3-ca"} & {m["name"] for m in job["volumeMounts"]}


def test_the_s3_secrets_count_among_the_users_for_the_rollout_checksum(helm: Path) -> None:
    """Their content is in every pod's checksum (read live by helm upgrade), like every Secret
    the user provides; here, without a cluster, their names are."""

    def checksum(secret: str) -> str:
        artifacts = merged(S3, {"s3": {"existingSecret": secret}})
        template = render(helm, artifacts).get("Deployment", "-mlflow")["spec"]["template"]
        return template["metadata"]["annotations"]["checksum/secrets"]

    assert checksum("keys-a") != checksum("keys-b")


def test_sftp_stays_the_default_with_no_s3_setting(helm: Path) -> None:
    env = env_map(server_pod(helm_template(helm, BASE))["containers"][0])
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("sftp://")
    assert not [name for name in env if "S3" in name or "BOTO" in name]


def test_an_empty_prefix_and_no_keys_mean_the_bucket_root_and_boto3s_chain(
    helm: Path,
) -> None:
    rendered = render(helm, {"backend": "s3", "s3": {"bucket": "team-artifacts", "prefix": ""}})
    server = server_pod(rendered)["containers"][0]
    env = env_map(server)
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://team-artifacts"
    assert "MLFLOW_S3_ENDPOINT_URL" not in env, "AWS S3"
    assert "MLFLOW_S3_CREDENTIALS_FILE" not in env, "an IAM role or web identity"


@pytest.mark.parametrize(
    ("artifacts", "mlflow", "message"),
    [
        ({"backend": "s3"}, {}, "mlflow.artifacts"),
        ({"backend": "s3", "s3": {"bucket": ""}}, {}, "mlflow.artifacts.s3.bucket"),
        ({"backend": "gcs"}, {}, "mlflow.artifacts.backend"),
        (
            {"backend": "s3", "s3": {"bucket": "b-1", "endpointUrl": "rgw.example.com"}},
            {},
            "mlflow.artifacts.s3.endpointUrl",
        ),
        (
            {"backend": "s3", "s3": {"bucket": "Team_Bucket"}},
            {},
            "mlflow.artifacts.s3.bucket",
        ),
        (
            {"backend": "s3", "s3": {"bucket": "team-artifacts"}},
            {"serveArtifacts": False},
            "needs mlflow.serveArtifacts: true",
        ),
    ],
)
def test_values_that_cannot_work_stop_the_render(
    helm: Path, artifacts: dict[str, Any], mlflow: dict[str, Any], message: str
) -> None:
    with pytest.raises(RenderError, match=message.replace(".", r"\.")):
        render(helm, artifacts, **mlflow)


def test_the_documented_example_renders_as_described(helm: Path) -> None:
    """docs/kubernetes.md, "Artifacts on S3": its values block, rendered."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md").read_text()
    section = text.split("### Artifacts on S3", 1)[1]
    match = re.search(r"^```yaml\n(.*?)^```$", section, re.S | re.M)
    assert match, "docs/kubernetes.md: the S3 section has no yaml block"
    rendered = helm_template(helm, merged(BASE, yaml.safe_load(match[1])))
    env = env_map(server_pod(rendered)["containers"][0])
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://team-artifacts/mlflow"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "https://rgw.example.com"
    assert env["MLFLOW_S3_CA_FILE"] == "/etc/mlflow/s3-ca/ca.crt"
    assert env["MLFLOW_S3_CREDENTIALS_FILE"] == "/etc/mlflow/s3/credentials"
