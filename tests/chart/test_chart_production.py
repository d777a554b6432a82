"""The production checklist of docs/kubernetes.md: its values block, read from the page, rendered
and checked item by item, so that the example a platform engineer copies keeps working."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chartlib import REPO_ROOT, Rendered, env_map, helm_template, migration_job, render_notes
from mlopskit.contract import load_contract
from test_chart_render import KUBERNETES_VERSION

DOC = REPO_ROOT / "docs" / "kubernetes.md"
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


def checklist_values() -> dict[str, Any]:
    """The first YAML block of the "Production checklist" section."""
    section = DOC.read_text().split("\n## Production checklist\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```yaml\n(.*?)^```$", section, re.S | re.M)
    assert match, "docs/kubernetes.md: the production checklist has no yaml block"
    return yaml.safe_load(match[1])


VALUES = checklist_values()


@pytest.fixture(scope="module")
def rendered(helm: Path) -> Rendered:
    return helm_template(helm, VALUES)


def mlflow_pod(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]


def policy(rendered: Rendered, component: str) -> dict[str, Any]:
    return rendered.get("NetworkPolicy", f"-{component}")["spec"]


def test_gitops_two_renders_are_the_same_and_nothing_is_generated(
    helm: Path, rendered: Rendered
) -> None:
    assert helm_template(helm, VALUES).docs == rendered.docs
    generated = [
        s["metadata"]["name"]
        for s in rendered.of_kind("Secret")
        if s["metadata"]["labels"].get("mlops-kit/secret") != "people"
    ]
    assert generated == []


def test_every_object_is_valid_kubernetes(rendered: Rendered) -> None:
    for doc in rendered.docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_clients_reach_mlflow_over_tls_at_the_ingress(rendered: Rendered) -> None:
    spec = rendered.get("Ingress", "-mlflow")["spec"]
    ingress = VALUES["mlflow"]["ingress"]
    assert [rule["host"] for rule in spec["rules"]] == [ingress["host"]]
    assert spec["tls"] == [{"hosts": [ingress["host"]], "secretName": ingress["tls"]["secretName"]}]


def test_the_hop_behind_the_ingress_is_encrypted_too(rendered: Rendered) -> None:
    pod = mlflow_pod(rendered)
    secret = VALUES["mlflow"]["tls"]["existingSecret"]
    assert [v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret]
    env = env_map(pod["containers"][0])
    assert env["MLFLOW_TLS_CERT_FILE"]
    assert env["MLFLOW_TLS_KEY_FILE"]
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    annotations = rendered.get("Ingress", "-mlflow")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"


def test_mlflow_and_its_migration_verify_the_database_certificate(rendered: Rendered) -> None:
    pod = mlflow_pod(rendered)
    ca_secret = VALUES["externalDatabase"]["tls"]["existingSecret"]
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == ca_secret]
    job = migration_job(rendered)["spec"]["template"]["spec"]
    assert volume in job["volumes"]
    containers = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
    containers["migrate"] = job["containers"][0]
    for name in ("migrate", "wait-schema", "mlflow"):
        env = env_map(containers[name])
        assert env["MLFLOW_DB_SSLMODE"] == "verify-full", name
        assert env["MLFLOW_DB_HOST"] == VALUES["externalDatabase"]["host"], name
        (mount,) = [m for m in containers[name]["volumeMounts"] if m["name"] == volume["name"]]
        assert env["MLFLOW_DB_SSLROOTCERT"].startswith(mount["mountPath"]), name
        assert mount["readOnly"] is True


def test_mlflow_admits_only_the_ingress_controller_its_clients_and_monitoring(
    rendered: Rendered,
) -> None:
    rules = policy(rendered, "mlflow")["ingress"]
    peers = [peer for rule in rules for peer in rule.get("from") or [{}]]
    assert {} not in peers, "a rule admits every source"
    assert not [p for p in peers if "ipBlock" in p], "no CIDR was configured"
    # Other namespaces: only whole namespaces named by the values (the controller, monitoring).
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in peers
        if "namespaceSelector" in p
    }
    controller = VALUES["networkPolicy"]["mlflow"]["ingressControllerNamespace"]
    defaults = yaml.safe_load((REPO_ROOT / "charts/mlops-kit/values.yaml").read_text())
    monitoring = defaults["networkPolicy"]["mlflow"]["monitoringNamespace"]
    assert namespaces == {controller, monitoring}
    same_namespace = [p for p in peers if "namespaceSelector" not in p]
    assert all(p["podSelector"]["matchLabels"] for p in same_namespace), "a pod selector is empty"


def test_egress_is_dns_the_database_address_and_sftp_only(rendered: Rendered) -> None:
    mlflow = policy(rendered, "mlflow")
    assert "Egress" in mlflow["policyTypes"]
    destinations = [rule.get("to") for rule in mlflow["egress"]]
    assert [{}] not in destinations, "a rule lets MLflow go anywhere"
    assert None not in destinations[1:], "only the DNS rule may leave its destination open"
    assert VALUES["networkPolicy"]["egress"]["externalDatabaseTo"] in destinations
    sftp = policy(rendered, "sftp")
    assert sftp["egress"] == [{"ports": DNS_PORTS}]
    assert "postgresql" not in {
        p["metadata"]["labels"].get("app.kubernetes.io/component")
        for p in rendered.of_kind("NetworkPolicy")
    }, "the bundled PostgreSQL is off"


def test_the_sizing_fits_and_notes_say_what_the_database_must_accept(helm: Path) -> None:
    mlflow = VALUES["mlflow"]
    sizing = load_contract().sizing
    pods = mlflow["autoscaling"]["maxReplicas"] + sizing.rollout_surge
    need = sizing.db_connections(
        pods, mlflow["workers"], mlflow["dbPoolSize"], mlflow["dbMaxOverflow"]
    )
    notes = render_notes(helm, VALUES)
    sizing_block = notes.split("SIZING (", 1)[1].split("\n\n", 1)[0]
    warnings = [line.strip() for line in sizing_block.splitlines() if line.strip().startswith("- ")]
    assert len(warnings) == 1, warnings  # no SFTP memory or MaxStartups warning
    expected = f"- The external PostgreSQL must accept {need} connections from MLflow"
    assert " ".join(warnings[0].split()).startswith(expected), warnings
