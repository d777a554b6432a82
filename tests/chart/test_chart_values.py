"""What the values do: components switched off, secrets, OpenShift detection, and the schema."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from chartlib import (
    OPENSHIFT_API,
    Rendered,
    RenderError,
    env_map,
    helm_template,
    pod_specs,
    render_notes,
)
from conftest import ED25519_PUBLIC, EXISTING_SECRETS
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mlopskit.contract import load_contract


def mlflow_env(rendered: Rendered) -> dict[str, str]:
    return env_map(
        rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0]
    )


def secret_values(rendered: Rendered) -> list[str]:
    return [
        base64.b64decode(value).decode()
        for secret in rendered.of_kind("Secret")
        for value in (secret.get("data") or {}).values()
    ]


def test_defaults_generate_every_secret_and_keep_them(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["defaults"]
    secrets = {s["metadata"]["name"]: s for s in rendered.of_kind("Secret")}
    assert set(secrets) == {
        "smoke-mlops-kit-postgresql", "smoke-mlops-kit-mlflow-auth",
        "smoke-mlops-kit-mlflow-sftp-client", "smoke-mlops-kit-sftp-host-keys",
        "smoke-mlops-kit-mlflow-people", "smoke-mlops-kit-mlflow-metrics", "smoke-mlops-kit-tests",
    }  # fmt: skip
    for secret in secrets.values():
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pg = {
        k: base64.b64decode(v).decode()
        for k, v in secrets["smoke-mlops-kit-postgresql"]["data"].items()
    }
    assert set(pg) == {"postgres-password", "password"}
    assert all(len(v) == 40 for v in pg.values())
    assert pg["postgres-password"] != pg["password"]
    key = serialization.load_pem_private_key(
        base64.b64decode(secrets["smoke-mlops-kit-mlflow-sftp-client"]["data"]["id_rsa"]),
        password=None,
    )
    assert isinstance(key, rsa.RSAPrivateKey), "pysftp needs an RSA key"
    host_keys = {
        name: serialization.load_pem_private_key(base64.b64decode(value), password=None)
        for name, value in secrets["smoke-mlops-kit-sftp-host-keys"]["data"].items()
    }
    # The profile's types (images/contract.yaml), the same as the Docker target's.
    assert set(host_keys) == {"ssh_host_ecdsa_key", "ssh_host_rsa_key"}
    assert isinstance(host_keys["ssh_host_ecdsa_key"], ec.EllipticCurvePrivateKey)
    assert isinstance(host_keys["ssh_host_rsa_key"], rsa.RSAPrivateKey)


GITOPS = {
    **EXISTING_SECRETS,
    "generateSecrets": False,
    "tests": {"accounts": False},
    "people": [
        {"name": "alice", "mlflow": "editor", "dvc": "write", "publicKey": ED25519_PUBLIC,
         "existingSecret": "alice-mlflow"},
    ],
}  # fmt: skip


def test_gitops_renders_are_identical(helm: Path) -> None:
    """Argo CD and Flux render with helm template: without generated secrets, twice the same."""
    first, second = (helm_template(helm, GITOPS) for _ in range(2))
    assert first.docs == second.docs
    assert not [
        s["metadata"]["name"]
        for s in first.of_kind("Secret")
        if s["metadata"]["labels"].get("mlops-kit/secret") != "people"
    ], "only the people Secret (people.json, from the values) may remain"


def test_gitops_without_an_existing_secret_names_each_missing_one(helm: Path) -> None:
    values = {
        "generateSecrets": False,
        "mlflow": {"sftpClientKey": {"existingSecret": "key"}},
        "people": [{"name": "bob", "mlflow": "reader", "dvc": "none"}],
    }
    with pytest.raises(RenderError) as failure:
        helm_template(helm, values)
    message = " ".join(str(failure.value).split())
    assert (
        "generateSecrets is false (GitOps: nothing random is rendered), so set "
        "postgresql.auth.existingSecret, mlflow.auth.existingSecret, "
        "sftp.hostKeys.existingSecret, mlflow.metrics.existingSecret, "
        "people[bob].existingSecret, tests.accounts: false"
    ) in message


def test_secrets_are_looked_up_before_generating() -> None:
    """Upgrades keep secrets: each generated value is read back from the live Secret first."""
    text = (
        Path(__file__).resolve().parents[2] / "charts/mlops-kit/templates/secrets.yaml"
    ).read_text()
    assert 'lookup "v1" "Secret" .ctx.Release.Namespace .name' in text
    assert "if hasKey $data $key" in text


def test_nothing_secret_in_configmaps_or_env(case: Rendered) -> None:
    secrets = [v for v in secret_values(case) if len(v) >= 20]
    public = [str(cm.get("data")) for cm in case.of_kind("ConfigMap")]
    public += [str(spec) for _, spec in pod_specs(case)]
    for value in secrets:
        for text in public:
            assert value.strip() not in text


def test_existing_secrets_replace_generated_ones(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["existing-secrets"]
    # Only the people's list and the helm test keys are always the chart's own.
    assert rendered.names("Secret") == {"smoke-mlops-kit-mlflow-people", "smoke-mlops-kit-tests"}
    referenced = {
        v["secret"]["secretName"]
        for _, spec in pod_specs(rendered)
        for v in spec["volumes"]
        if "secret" in v
    }
    assert referenced == {
        "team-mlflow-auth",
        "team-mlflow-sftp-key",
        "team-mlflow-metrics",
        "team-postgresql",
        "team-postgresql-tls",
        "team-sftp-host-keys",
        "smoke-mlops-kit-mlflow-people",
        "smoke-mlops-kit-tests",
    }


def test_external_database(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["external-db"]
    assert not rendered.of_kind("StatefulSet")
    assert "smoke-mlops-kit-postgresql" not in rendered.names("NetworkPolicy") | rendered.names(
        "Secret"
    )
    env = mlflow_env(rendered)
    assert (env["MLFLOW_DB_HOST"], env["MLFLOW_DB_PORT"], env["MLFLOW_DB_NAME"]) == (
        "db.example.com",
        "6432",
        "tracking",
    )
    assert (env["MLFLOW_DB_USER"], env["MLFLOW_AUTH_DB_NAME"], env["MLFLOW_DB_SSLMODE"]) == (
        "mlflow_app",
        "tracking_auth",
        "verify-full",
    )
    volumes = rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]["volumes"]
    db = next(v for v in volumes if v["name"] == "db-password")
    assert db["secret"]["secretName"] == "external-db"
    assert db["secret"]["items"] == [{"key": "db-password", "path": "password"}]


@pytest.mark.parametrize("host", ["fd00:6::20", "[fd00:6::20]"])
def test_an_ipv6_external_sftp_is_bracketed_in_uris_only(helm: Path, host: str) -> None:
    """sftp://user@fd00:6::20:22/... would read as host fd00:6 (RFC 3986: brackets)."""
    external = {
        **EXISTING_SECRETS,
        "sftp": {"enabled": False},
        "externalSftp": {"host": host, "knownHosts": f"fd00:6::20 {ED25519_PUBLIC}"},
    }
    rendered = helm_template(helm, external)
    env = mlflow_env(rendered)
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "sftp://mlops@[fd00:6::20]:22/data/artifacts"
    smoke = rendered.get("Pod", "-smoke-test")["spec"]["containers"][0]
    assert "fd00:6::20" in env_map(smoke).values()
    notes = render_notes(helm, external)
    assert "ssh://mlops@[fd00:6::20]:22/data/dvc" in notes


def test_external_sftp(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["external-sftp"]
    assert not [n for n in rendered.names("Deployment") if n.endswith("-sftp")]
    assert not rendered.of_kind("PersistentVolumeClaim")
    env = mlflow_env(rendered)
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "sftp://mlflow@files.example.com:22/srv/mlflow"
    known = rendered.get("ConfigMap", "-mlflow-known-hosts")["data"]["known_hosts"]
    assert known.startswith("files.example.com ssh-ed25519 ")
    spec = rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["wait-schema"]


def test_auth_off(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["auth-off"]
    env = mlflow_env(rendered)
    assert env["MLFLOW_AUTH_ENABLED"] == "false"
    assert not [n for n in env if n.startswith("MLFLOW_AUTH_") and n != "MLFLOW_AUTH_ENABLED"]
    assert "smoke-mlops-kit-mlflow-auth" not in rendered.names("Secret")
    pg_env = env_map(
        rendered.get("StatefulSet", "-postgresql")["spec"]["template"]["spec"]["containers"][0]
    )
    assert pg_env["POSTGRESQL_AUTH_DB"] == "", "no auth database without auth"


def test_hpa_takes_over_replicas(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["hpa"]
    hpa = rendered.get("HorizontalPodAutoscaler", "-mlflow")
    assert (
        hpa["spec"]["scaleTargetRef"]["name"]
        == rendered.get("Deployment", "-mlflow")["metadata"]["name"]
    )
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    assert "replicas" not in rendered.get("Deployment", "-mlflow")["spec"]
    assert "replicas" in matrix_renders["defaults"].get("Deployment", "-mlflow")["spec"]
    assert not matrix_renders["defaults"].of_kind("HorizontalPodAutoscaler")
    assert rendered.get("PodDisruptionBudget", "-mlflow")["spec"]["maxUnavailable"] == 1


def test_openshift_mode_is_detected(matrix_renders: dict[str, Rendered]) -> None:
    openshift, plain = matrix_renders["openshift"], matrix_renders["defaults"]
    assert openshift.of_kind("Route")
    assert not plain.of_kind("Route")
    for _, spec in pod_specs(openshift):
        assert "runAsUser" not in spec["securityContext"]
        assert "fsGroup" not in spec["securityContext"]
    for _, spec in pod_specs(plain):
        # The profile's UID, the same as the Docker target's.
        assert spec["securityContext"]["runAsUser"] == load_contract().profile["uid"].default
        assert spec["securityContext"]["fsGroup"] == 0


def test_openshift_override_beats_detection(helm: Path) -> None:
    forced_off = helm_template(helm, {"openshift": {"enabled": False}}, OPENSHIFT_API)
    assert not forced_off.of_kind("Route")
    forced_on = helm_template(
        helm, {"openshift": {"enabled": True}, "mlflow": {"route": {"host": "m.apps.example.com"}}}
    )
    assert forced_on.of_kind("Route")


def test_route_host_is_required_when_it_cannot_be_found(helm: Path) -> None:
    with pytest.raises(RenderError, match=r"mlflow\.route\.host is required"):
        helm_template(helm, {}, OPENSHIFT_API)


def test_sftp_host_key_types_choose_the_generated_keys(helm: Path) -> None:
    rendered = helm_template(helm, {"sftp": {"hostKeys": {"types": ["rsa"]}}})
    secret = rendered.get("Secret", "-sftp-host-keys")
    assert set(secret["data"]) == {"ssh_host_rsa_key"}
    protected = env_map(rendered.get("Pod", "-smoke-test")["spec"]["containers"][0])
    assert "ssh_host_rsa_key" in protected["SMOKE_SFTP_PROTECTED_FILES"]
    assert "ecdsa" not in protected["SMOKE_SFTP_PROTECTED_FILES"]


def test_sftp_service_type(helm: Path) -> None:
    rendered = helm_template(helm, {"sftp": {"service": {"type": "NodePort", "nodePort": 30222}}})
    service = rendered.get("Service", "-sftp")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == 30222


# ---------- the schema rejects bad values with a message naming them ----------

BAD_VALUES = [
    ({"mlflow": {"replicas": 2}}, "additional properties 'replicas' not allowed"),
    ({"unknownTopLevel": True}, "additional properties 'unknownTopLevel' not allowed"),
    ({"openshift": {"enabled": "maybe"}}, "/openshift/enabled"),
    ({"mlflow": {"auth": {"defaultPermission": "ALL"}}}, "/mlflow/auth/defaultPermission"),
    ({"mlflow": {"workers": 0}}, "/mlflow/workers"),
    ({"mlflow": {"image": {"digest": "latest"}}}, "/mlflow/image/digest"),
    ({"sftp": {"service": {"type": "Route"}}}, "/sftp/service/type"),
    ({"sftp": {"service": {"nodePort": 80}}}, "/sftp/service/nodePort"),
    ({"sftp": {"username": "Root User"}}, "/sftp/username"),
    # OpenSSH cannot load the PKCS#8 ed25519 keys Helm writes; no types means no host key.
    ({"sftp": {"hostKeys": {"types": ["ed25519"]}}}, "/sftp/hostKeys/types/0"),
    ({"sftp": {"hostKeys": {"types": []}}}, "/sftp/hostKeys/types"),
    (
        {"sftp": {"authorizedKeys": {"bob": ED25519_PUBLIC}}},
        "additional properties 'authorizedKeys' not allowed",
    ),
    ({"networkPolicy": {"sftpClientCIDRs": ["everyone"]}}, "/networkPolicy/sftpClientCIDRs/0"),
    ({"postgresql": {"auth": {"database": "My-DB"}}}, "/postgresql/auth/database"),
    ({"postgresql": {"persistence": {"size": "lots"}}}, "/postgresql/persistence/size"),
    ({"postgresql": {"enabled": False}}, "/externalDatabase/host"),
    (
        {"postgresql": {"enabled": False}, "externalDatabase": {"host": "db"}},
        "/externalDatabase/existingSecret",
    ),
    ({"sftp": {"enabled": False}, "externalSftp": {"host": "files"}}, "/externalSftp/knownHosts"),
    ({"mlflow": {"ingress": {"enabled": True}}}, "/mlflow/ingress/host"),
    ({"externalSftp": {"artifactsPath": "relative/path"}}, "/externalSftp/artifactsPath"),
    # The extension points keep their Kubernetes shapes (test_chart_extensions.py).
    ({"mlflow": {"extraEnv": [{"value": "x"}]}}, "/mlflow/extraEnv/0"),
    ({"postgresql": {"extraEnv": [{"name": "A", "valeu": "x"}]}}, "/postgresql/extraEnv/0"),
    ({"sftp": {"extraVolumeMounts": [{"name": "a"}]}}, "/sftp/extraVolumeMounts/0"),
    ({"mlflow": {"extraContainers": [{"image": "busybox"}]}}, "/mlflow/extraContainers/0"),
    ({"sftp": {"extraInitContainers": {"name": "a"}}}, "/sftp/extraInitContainers"),
    ({"postgresql": {"extraVolumes": [{"name": "Bad_Name"}]}}, "/postgresql/extraVolumes/0"),
    ({"extraObjects": [3]}, "/extraObjects/0"),
    ({"mlflow": {"extraEnvFrom": [{"secret": {"name": "a"}}]}}, "/mlflow/extraEnvFrom/0"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_schema_rejects_bad_values(helm: Path, values: dict, message: str) -> None:
    with pytest.raises(RenderError) as failure:
        helm_template(helm, values)
    assert "values don't meet the specifications of the schema" in str(failure.value)
    assert names_the_problem(str(failure.value), message), str(failure.value)


def names_the_problem(error: str, expected: str) -> bool:
    """helm 3 and helm 4 word schema errors differently; both must name the same key."""
    if expected.startswith("/"):  # helm 4: /a/b/c, helm 3: a.b.c
        return expected in error or expected.strip("/").replace("/", ".") in error
    key = expected.split("'")[1]  # "additional properties 'key' not allowed"
    return expected in error or f"Additional property {key} is not allowed" in error


def _leaf_keys(values: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if (
            isinstance(value, dict)
            and value
            and not key.endswith(("annotations", "Labels", "labels"))
        ):
            keys |= _leaf_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


def test_docs_reference_every_value() -> None:
    """docs/kubernetes.md's table lists every key of values.yaml (the README links it)."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    values = yaml.safe_load((root / "charts/mlops-kit/values.yaml").read_text())
    docs = (root / "docs/kubernetes.md").read_text()
    leaves = {k for k in _leaf_keys(values) if ".resources." not in k}
    missing = sorted(k for k in leaves if f"`{k}`" not in docs)
    assert not missing, f"docs/kubernetes.md does not document {missing}"
