"""checksum/secrets: a rotated existingSecret (or a bumped secretsRevision, the GitOps way) rolls
MLflow, PostgreSQL and SFTP together, so that no pod keeps serving an old password."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from chartlib import Rendered, helm_template
from conftest import EXISTING_SECRETS

SERVERS = ("Deployment", "StatefulSet")


def pods(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """component -> pod template of the release's servers."""
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc["spec"]["template"]
        for kind in SERVERS
        for doc in rendered.of_kind(kind)
    }


def referenced_secrets(pod_spec: dict[str, Any]) -> set[str]:
    """Every Secret a pod spec reads: volumes, projected sources, env and envFrom."""
    names = set()
    for volume in pod_spec.get("volumes") or []:
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                names.add(source["secret"]["name"])
    for container in [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]:
        for item in container.get("env") or []:
            if ref := (item.get("valueFrom") or {}).get("secretKeyRef"):
                names.add(ref["name"])
        for item in container.get("envFrom") or []:
            if ref := item.get("secretRef"):
                names.add(ref["name"])
    return names


def expected_checksum(names: set[str], revision: object = "") -> str:
    """What helm template (no cluster: each live Secret's data is {}) must hash."""
    text = f"revision={revision}" + "".join(f";{name}={{}}" for name in sorted(names))
    return hashlib.sha256(text.encode()).hexdigest()


def user_secrets(rendered: Rendered) -> set[str]:
    """Secrets the pods read that the chart does not render: the user's."""
    made = rendered.names("Secret")
    return {
        name
        for template in pods(rendered).values()
        for name in referenced_secrets(template["spec"])
        if name not in made
    }


def test_every_server_hashes_exactly_the_users_secrets(case: Rendered) -> None:
    """In every matrix case: the checksum covers each Secret a pod reads that the chart does
    not make (a new existingSecret value that is left out fails here), and nothing else."""
    checksum = expected_checksum(user_secrets(case))
    for component, template in pods(case).items():
        assert template["metadata"]["annotations"]["checksum/secrets"] == checksum, component


def test_a_rotation_rolls_every_server_together(helm: Path) -> None:
    values: dict[str, Any] = {
        **copy.deepcopy(EXISTING_SECRETS),
        "generateSecrets": False,
        "tests": {"accounts": False},
    }
    before = helm_template(helm, values)
    after = helm_template(helm, {**values, "secretsRevision": "2026-11-30"})
    assert set(pods(before)) == {"mlflow", "postgresql", "sftp"}
    for component in pods(before):
        old = pods(before)[component]["metadata"]["annotations"]["checksum/secrets"]
        new = pods(after)[component]["metadata"]["annotations"]["checksum/secrets"]
        assert old != new, f"{component} would keep the old secret"
        assert new == expected_checksum(user_secrets(after), "2026-11-30")
    # The revision is the only difference: GitOps renders stay identical otherwise.
    assert json.dumps(helm_template(helm, values).docs) == json.dumps(before.docs)
