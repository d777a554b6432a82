"""The people's DVC remote on the artifacts' S3 store (dvc.backend: s3): the chart hands MLflow
the remote and the people's dvc levels, from which the image sets the bucket's policy (tested
against Ceph RGW in tests/images and tests/e2e), takes the DVC area off SFTP, and refuses values
that cannot work."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import Rendered, RenderError, env_map, helm_template, merged, render_notes
from conftest import PEOPLE

VALUES: dict[str, Any] = {
    "postgresql": {"auth": {"existingSecret": "pg"}},
    "mlflow": {
        "artifacts": {
            "backend": "s3",
            "s3": {"endpointUrl": "http://rgw.storage:7480", "bucket": "team-artifacts"},
        }
    },
    "dvc": {
        "backend": "s3",
        "s3": {"bucket": "team-data", "prefix": "/datasets/", "account": "lab"},
    },
    "people": PEOPLE,
}


@pytest.fixture(scope="module")
def rendered(helm: Path) -> Rendered:
    return helm_template(helm, VALUES)


def server_env(rendered: Rendered) -> dict[str, str]:
    spec = rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]
    return env_map(spec["containers"][0])


def test_mlflow_gets_the_remote_and_the_tenant_of_the_peoples_s3_users(rendered) -> None:
    env = server_env(rendered)
    assert env["MLFLOW_DVC_S3_REMOTE"] == "s3://team-data/datasets"
    assert env["MLFLOW_DVC_S3_ACCOUNT"] == "lab"
    assert env["MLFLOW_PEOPLE_DIR"], "the levels come from the people list"


def test_the_people_list_carries_each_persons_dvc_level(rendered) -> None:
    secret = rendered.get("Secret", "-mlflow-people")
    people = json.loads(base64.b64decode(secret["data"]["people.json"]))
    levels = {person["name"]: person.get("dvc") for person in people}
    assert levels == {
        "alice": "write", "bob": "read", "carol": "none", "dave": "none",
        "helm-test-reader": None,
    }  # fmt: skip


def dvc_access_lines(rendered: Rendered) -> list[str]:
    access = rendered.get("ConfigMap", "-sftp-access")["data"]
    return [line for lines in access.values() for line in lines.splitlines() if "dvc " in line]


def test_no_persons_key_reaches_the_sftp_dvc_area(rendered) -> None:
    assert dvc_access_lines(rendered) == []


def test_people_need_no_public_key_for_an_s3_remote(helm: Path) -> None:
    people = [{"name": "erin", "mlflow": "editor", "dvc": "write"}]
    env = server_env(helm_template(helm, merged(VALUES, {"people": people})))
    assert env["MLFLOW_DVC_S3_REMOTE"] == "s3://team-data/datasets"


def test_sftp_stays_the_default_remote(helm: Path) -> None:
    sftp = helm_template(helm, merged(VALUES, {"dvc": {"backend": "sftp"}}))
    assert "MLFLOW_DVC_S3_REMOTE" not in server_env(sftp)
    assert len(dvc_access_lines(sftp)) == 2, "alice (write) and bob (read) on SFTP"


def test_notes_tell_people_how_to_reach_the_remote_with_their_own_keys(helm: Path) -> None:
    notes = render_notes(helm, VALUES)
    assert "DVC remote on S3: s3://team-data/datasets" in notes
    assert "dvc remote modify store endpointurl http://rgw.storage:7480" in notes
    assert "credentialpath" in notes
    assert "ssh://" not in notes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"mlflow": {"artifacts": {"backend": "sftp"}}},
            "dvc.backend=s3 puts the DVC remote on the artifacts' store, but "
            "mlflow.artifacts.backend=sftp",
        ),
        ({"dvc": {"s3": {"bucket": "team-artifacts"}}}, "dvc.s3.bucket=team-artifacts holds"),
        (
            {"mlflow": {"auth": {"enabled": False}}, "people": []},
            "dvc.backend=s3 takes the people's levels from MLflow's people list",
        ),
        ({"dvc": {"s3": {"bucket": ""}}}, "dvc.s3.bucket"),
        ({"dvc": {"s3": {"prefix": "/"}}}, "dvc.s3.prefix"),
        ({"dvc": {"s3": {"account": "a b"}}}, "dvc.s3.account"),
        ({"dvc": {"backend": "nfs"}}, "dvc.backend"),
        ({"dvc": {"s3": {"endpointUrl": "rgw:7480"}}}, "dvc.s3.endpointUrl"),
    ],
)
def test_values_that_cannot_work_stop_the_render(
    helm: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(RenderError, match=message.replace(".", r"\.")):
        helm_template(helm, merged(VALUES, change))


def test_the_documented_example_renders_as_described(helm: Path) -> None:
    """docs/kubernetes.md, "The DVC remote on S3": its values block, rendered."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md").read_text()
    section = text.split("### The DVC remote on S3", 1)[1]
    match = re.search(r"^```yaml\n(.*?)^```$", section, re.S | re.M)
    assert match, "docs/kubernetes.md: the DVC-on-S3 section has no yaml block"
    values = {key: value for key, value in VALUES.items() if key != "dvc"}
    env = server_env(helm_template(helm, merged(values, yaml.safe_load(match[1]))))
    assert env["MLFLOW_DVC_S3_REMOTE"] == "s3://team-data/dvc"
    assert env["MLFLOW_DVC_S3_ACCOUNT"] == ""
