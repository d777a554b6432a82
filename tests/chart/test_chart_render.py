"""helm lint, and every case of the values matrix strictly valid for a pinned Kubernetes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from chartlib import CHART_DIR, CRD_KINDS, MONITORING_API, OPENSHIFT_API, Rendered, helm_template
from conftest import MATRIX

# The Kubernetes version the output must be valid for (kubernetes-validate ships its schemas).
KUBERNETES_VERSION = "1.33.0"


@pytest.mark.parametrize("case_name", sorted(MATRIX))
def test_helm_lint_passes_strict(helm: Path, case_name: str, tmp_path: Path) -> None:
    values, args = MATRIX[case_name]
    # helm lint has no --api-versions: force OpenShift mode instead of detecting it, and lint
    # without the ServiceMonitor, which refuses to render without its API (the render tests
    # check it).
    if args == OPENSHIFT_API:
        args = ["--set", "openshift.enabled=true"]
    elif args == MONITORING_API:
        args = ["--set", "mlflow.metrics.serviceMonitor.enabled=false"]
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART_DIR), "-f", str(values_file), *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_every_document_is_valid_kubernetes(case: Rendered) -> None:
    checked = 0
    for doc in case.docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")
        checked += 1
    assert checked >= 8, f"only {checked} documents rendered"


def test_every_port_names_its_protocol(case: Rendered) -> None:
    """Helm 4 applies server-side; older API servers reject ports without a protocol."""
    for doc in case.docs:
        ports = []
        if doc["kind"] == "Service":
            ports = doc["spec"]["ports"]
        for spec in _pod_spec_list(doc):
            for container in spec.get("initContainers", []) + spec["containers"]:
                ports += container.get("ports", [])
        for port in ports:
            assert port.get("protocol") == "TCP", f"{doc['kind']}/{doc['metadata']['name']}"


def _pod_spec_list(doc: dict) -> list[dict]:
    if doc["kind"] == "Pod":
        return [doc["spec"]]
    if doc["kind"] in {"Deployment", "StatefulSet"}:
        return [doc["spec"]["template"]["spec"]]
    return []


def test_route_is_edge_tls_to_the_mlflow_service(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["openshift"]
    route = rendered.get("Route", "-mlflow")
    assert route["apiVersion"] == "route.openshift.io/v1"
    assert route["spec"]["host"] == "mlflow.apps.example.com"
    assert route["spec"]["tls"] == {
        "termination": "edge",
        "insecureEdgeTerminationPolicy": "Redirect",
    }
    service = rendered.get("Service", "-mlflow")
    assert route["spec"]["to"] == {
        "kind": "Service",
        "name": service["metadata"]["name"],
        "weight": 100,
    }
    assert route["spec"]["port"]["targetPort"] == service["spec"]["ports"][0]["name"]
    assert not rendered.of_kind("Ingress"), "OpenShift mode exposes through the Route only"


def test_service_monitor_scrapes_metrics_with_basic_auth(
    matrix_renders: dict[str, Rendered],
) -> None:
    rendered = matrix_renders["direct-artifacts"]
    monitor = rendered.get("ServiceMonitor", "-mlflow")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    # The metrics account (it may read /metrics and nothing else), never the admin.
    secret = rendered.get("Secret", "-mlflow-metrics")
    assert endpoint["basicAuth"]["username"] == {
        "name": secret["metadata"]["name"],
        "key": "username",
    }
    assert endpoint["basicAuth"]["password"] == {
        "name": secret["metadata"]["name"],
        "key": "password",
    }
    assert "admin" not in str(endpoint)
    env = {
        e["name"]: e.get("value")
        for e in rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert env["MLFLOW_METRICS_USERNAME"] == "metrics"
    assert env["MLFLOW_METRICS_PASSWORD_FILE"] == "/etc/mlflow/metrics/password"
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(
        rendered.get("Service", "-mlflow")["metadata"]["labels"].items()
    )


@pytest.mark.parametrize(
    ("kube_version", "pdb", "hpa"),
    [
        ("1.20.2", "policy/v1beta1", "autoscaling/v2beta2"),  # the throwaway cluster's
        ("1.22.0", "policy/v1", "autoscaling/v2beta2"),
        (KUBERNETES_VERSION, "policy/v1", "autoscaling/v2"),
    ],
)
def test_api_versions_follow_the_server(helm: Path, kube_version: str, pdb: str, hpa: str) -> None:
    """Older servers get the API versions they serve instead of a refused install."""
    values = {"mlflow": {"autoscaling": {"enabled": True}}}
    rendered = helm_template(helm, values, ["--kube-version", kube_version])
    assert rendered.get("PodDisruptionBudget", "-mlflow")["apiVersion"] == pdb
    assert rendered.get("HorizontalPodAutoscaler", "-mlflow")["apiVersion"] == hpa
